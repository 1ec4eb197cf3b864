"""Revocations in the local store: kept until they end, durable across a reopen, and seen
by the other processes of the machine (each a connection of its own to the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from adapters.sqlite.revocations import SqliteRevocationList
from adapters.sqlite.store import SqliteStore

NOW = 1_800_000_000.0
DAY = 86_400.0

OpenStore = Callable[..., Awaitable[SqliteStore]]


class MovableClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def moving() -> MovableClock:
    return MovableClock()


def rows(folder: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(folder / "runtime.db") as connection:
        return connection.execute(
            "SELECT execution_id, revoked_at, expires_at FROM revocations ORDER BY execution_id"
        ).fetchall()


async def test_a_revocation_is_kept_until_it_ends(open_store: OpenStore, moving: MovableClock):
    revocations = SqliteRevocationList(await open_store(), moving)

    await revocations.revoke("e1", 60)

    assert await revocations.is_revoked("e1")
    assert not await revocations.is_revoked("e2")
    moving.now = NOW + 60
    assert not await revocations.is_revoked("e1")


async def test_a_row_holds_when_it_was_revoked_and_when_that_ends(
    open_store: OpenStore, moving: MovableClock, store_folder: Path
):
    revocations = SqliteRevocationList(await open_store(), moving)

    await revocations.revoke("e1", DAY)

    assert rows(store_folder) == [
        ("e1", "2027-01-15T08:00:00.000000Z", "2027-01-16T08:00:00.000000Z")
    ]


async def test_revoking_again_extends_and_never_shortens(
    open_store: OpenStore, moving: MovableClock
):
    revocations = SqliteRevocationList(await open_store(), moving)
    await revocations.revoke("e1", 60)
    moving.now = NOW + 30
    await revocations.revoke("e1", 60)
    await revocations.revoke("e1", 1)

    moving.now = NOW + 89
    assert await revocations.is_revoked("e1")
    moving.now = NOW + 90
    assert not await revocations.is_revoked("e1")


async def test_ended_revocations_are_purged_by_later_ones(
    open_store: OpenStore, moving: MovableClock, store_folder: Path
):
    revocations = SqliteRevocationList(await open_store(), moving, purge_batch=10)
    for number in range(5):
        await revocations.revoke(f"old-{number}", 1)
    moving.now = NOW + 2

    await revocations.revoke("new", 60)

    assert [row[0] for row in rows(store_folder)] == ["new"]


async def test_a_revocation_survives_closing_and_reopening_the_store(
    store_folder: Path, moving: MovableClock
):
    first = SqliteStore(store_folder)
    await first.open()
    await SqliteRevocationList(first, moving).revoke("e1", DAY)
    await first.close()

    second = SqliteStore(store_folder)
    await second.open()
    try:
        reopened = SqliteRevocationList(second, moving)
        assert await reopened.is_revoked("e1")
        assert await reopened.updates() == [("e1", NOW + DAY)]
    finally:
        await second.close()


async def test_updates_tell_what_other_connections_revoked_and_only_when_they_did(
    open_store: OpenStore, moving: MovableClock
):
    mine = SqliteRevocationList(await open_store(), moving)
    theirs = SqliteRevocationList(await open_store(), moving)  # another process on the file

    assert await mine.updates() == []
    await theirs.revoke("e1", DAY)
    assert await mine.updates() == [("e1", NOW + DAY)]
    assert await mine.updates() == []  # nothing committed since

    await theirs.revoke("e2", 60)
    moving.now = NOW + 61
    assert await mine.updates() == [("e1", NOW + DAY)]  # e2 has ended already


async def test_active_lists_every_revocation_that_has_not_ended(
    open_store: OpenStore, moving: MovableClock
):
    revocations = SqliteRevocationList(await open_store(), moving)
    await revocations.publish("e1", NOW + 60)
    await revocations.publish("e2", NOW + 10)

    moving.now = NOW + 10

    assert await revocations.active() == [("e1", NOW + 60)]
