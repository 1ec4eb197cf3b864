"""The store tests' world: a clock that moves at every reading, and SQLite stores on disk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.sqlite.store import SqliteStore
from application.ports import Clock

T0 = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)

OpenStore = Callable[..., Awaitable[SqliteStore]]


class TickingClock(Clock):
    """A clock one millisecond later at every reading, which remembers what it said.

    A time stamped twice would differ, so "stamped once" is visible.
    """

    def __init__(self) -> None:
        self.readings: list[datetime] = []

    def now(self) -> datetime:
        moment = T0 + timedelta(milliseconds=len(self.readings), microseconds=7)
        self.readings.append(moment)
        return moment


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


@pytest.fixture
def store_folder(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def open_store(store_folder: Path) -> AsyncIterator[OpenStore]:
    """Opens a new `SqliteStore` on the test's folder (or another); closes each at the end."""
    opened: list[SqliteStore] = []

    async def open_one(folder: Path | None = None) -> SqliteStore:
        store = SqliteStore(folder or store_folder)
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()
