"""The `AuditOutbox` contract, held by the Valkey stream (standalone and cluster) and the local
store's table, each shared by two consumers as two processes share them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from audit_kit import GROUP, STREAM_KEY
from valkey_servers import ValkeyCluster, ValkeyServer

from adapters.clock import SystemClock
from adapters.sqlite.audit_outbox import SqliteAuditDeadLetters, SqliteAuditOutbox
from adapters.sqlite.store import SqliteStore
from adapters.valkey.audit_outbox import ValkeyAuditOutbox
from adapters.valkey.gate import ValkeyGate
from application.ports import AuditOutbox, AuditOutboxUnavailableError, OutboxEntry
from domain.audit import AuditAction, AuditDetails, AuditEvent

if TYPE_CHECKING:
    from conftest import OpenClient

AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)
MAX_AGE = 3600.0
IDLE = 1.0  # seconds: a short audit.claimIdle
DEADLINE = 10.0


def event(n: int) -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id="exec-1",
        action=AuditAction.EXECUTE_TOOL_ACTION,
        timestamp=AT + timedelta(milliseconds=n),
        details=AuditDetails(
            outcome="ok",
            user_id="user-1",
            request_id=f"req-{n}",
            tool="slack",
            tool_action="send_message",
            value_hmac="hmac-sha256:" + "ab" * 32,
        ),
    )


def events_of(entries: list[OutboxEntry]) -> list[AuditEvent]:
    return [entry.event for entry in entries]


MakeOutbox = Callable[..., Awaitable[AuditOutbox]]


@dataclass
class Shared:
    """One outbox as every process sees it; `consumer` makes one more process's view."""

    kind: str
    consumer: MakeOutbox
    raw: Any = None  # the test's own Valkey client (None for the store)


@pytest.fixture(params=["valkey", "cluster", "sqlite"])
async def shared(
    request: pytest.FixtureRequest, tmp_path: Path, open_client: OpenClient
) -> AsyncIterator[Shared]:
    if request.param == "sqlite":
        stores: list[SqliteStore] = []

        async def sqlite_consumer(name: str, claim_idle: float = 60.0, **_: Any) -> AuditOutbox:
            store = SqliteStore(tmp_path / "store")  # a connection of its own: a process
            await store.open()
            stores.append(store)
            return SqliteAuditOutbox(
                store, consumer=name, claim_idle=claim_idle, clock=SystemClock()
            )

        yield Shared("sqlite", sqlite_consumer)
        for store in stores:
            await store.close()
        return
    if request.param == "valkey":
        server: ValkeyServer = request.getfixturevalue("valkey_server")
        url, mode = server.url(), "standalone"
    else:
        cluster: ValkeyCluster = request.getfixturevalue("valkey_cluster")
        url, mode = cluster.url(), "cluster"
    raw = open_client(url, mode=mode, command_timeout=2.0)
    await raw.delete(STREAM_KEY)  # the cluster is shared by the module's tests

    async def valkey_consumer(name: str, claim_idle: float = 60.0, **options: Any) -> AuditOutbox:
        options.setdefault("gate", ValkeyGate())
        options.setdefault("max_age", MAX_AGE)
        return ValkeyAuditOutbox(
            client=open_client(url, mode=mode, command_timeout=2.0),
            consumer=name,
            claim_idle=claim_idle,
            **options,
        )

    yield Shared(request.param, valkey_consumer, raw)


async def test_appended_events_are_claimed_oldest_first_by_one_consumer_only(
    shared: Shared,
) -> None:
    first, second = await shared.consumer("first"), await shared.consumer("second")
    for n in range(5):
        await first.append(event(n))

    claimed = await second.claim(3)
    rest = await first.claim(10)

    assert events_of(claimed) == [event(n) for n in range(3)]
    assert events_of(rest) == [event(3), event(4)]
    assert len({entry.entry_id for entry in claimed + rest}) == 5


async def test_a_claim_gives_the_consumer_its_own_pending_entries_first(shared: Shared) -> None:
    outbox = await shared.consumer("only")
    for n in range(3):
        await outbox.append(event(n))
    held = await outbox.claim(2)
    await outbox.append(event(3))

    again = await outbox.claim(10)

    assert [entry.entry_id for entry in again[:2]] == [entry.entry_id for entry in held]
    assert events_of(again) == [event(0), event(1), event(2), event(3)]


async def test_an_acknowledged_entry_is_claimed_by_no_one_and_leaves_the_backlog(
    shared: Shared,
) -> None:
    first, second = await shared.consumer("first", IDLE), await shared.consumer("second", IDLE)
    for n in range(3):
        await first.append(event(n))
    claimed = await first.claim(10)
    assert (await first.backlog()).pending == 3

    await first.ack([claimed[0].entry_id, claimed[2].entry_id])

    backlog = await second.backlog()
    assert backlog.pending == 1
    assert backlog.oldest_age is not None and backlog.oldest_age >= 0
    assert events_of(await first.claim(10)) == [event(1)]
    time.sleep(IDLE * 1.5)  # first stops renewing: only its pending entry may be taken
    assert events_of(await second.claim(10)) == [event(1)]


async def test_an_empty_outbox_has_no_backlog(shared: Shared) -> None:
    outbox = await shared.consumer("only")

    backlog = await outbox.backlog()

    assert (backlog.pending, backlog.oldest_age) == (0, None)


async def test_entries_of_a_consumer_that_stopped_are_taken_after_the_idle_time(
    shared: Shared,
) -> None:
    stopped, living = await shared.consumer("stopped", IDLE), await shared.consumer("living", IDLE)
    await stopped.append(event(1))
    assert len(await stopped.claim(10)) == 1

    assert await living.claim(10) == []
    taken: list[OutboxEntry] = []
    deadline = time.monotonic() + DEADLINE
    while not taken and time.monotonic() < deadline:
        time.sleep(0.05)
        taken = await living.claim(10)

    assert events_of(taken) == [event(1)]
    await living.ack([taken[0].entry_id])
    assert (await living.backlog()).pending == 0


async def test_a_consumer_that_keeps_claiming_keeps_its_entries(shared: Shared) -> None:
    idle = 2 * IDLE  # a renewal every 0.1 s, against a loaded machine's pauses
    holder, other = await shared.consumer("holder", idle), await shared.consumer("other", idle)
    await holder.append(event(1))
    await holder.claim(10)

    until = time.monotonic() + 1.5 * idle
    while time.monotonic() < until:
        time.sleep(0.1)
        assert len(await holder.claim(10)) == 1  # renewed, as the shipper's poll does
        assert await other.claim(10) == []


async def test_appending_an_event_twice_delivers_it_at_least_once(shared: Shared) -> None:
    outbox = await shared.consumer("only")
    await outbox.append(event(1))
    await outbox.append(event(1))  # a spool replayed again after a crash

    claimed = await outbox.claim(10)

    assert 1 <= len(claimed) <= 2
    assert set(events_of(claimed)) == {event(1)}


@pytest.mark.parametrize("shared", ["sqlite"], indirect=True)
async def test_the_store_deletes_an_acknowledged_row_at_once(shared: Shared) -> None:
    outbox = await shared.consumer("only")
    await outbox.append(event(1))
    await outbox.ack([entry.entry_id for entry in await outbox.claim(10)])

    assert await outbox.trim() == 0  # nothing left to trim
    assert (await outbox.backlog()).pending == 0
    assert await outbox.claim(10) == []


@pytest.mark.parametrize("shared", ["valkey", "cluster"], indirect=True)
async def test_trimming_removes_only_acknowledged_entries_older_than_the_maximum_age(
    shared: Shared,
) -> None:
    later = time.time() + MAX_AGE + 60  # every entry is older than the maximum age then
    now_outbox = await shared.consumer("reader")
    later_outbox = await shared.consumer("reader", wall_clock=lambda: later)
    for n in range(6):
        await now_outbox.append(event(n))
    assert await later_outbox.trim() == 0  # no consumer group yet: nothing was delivered

    claimed = await now_outbox.claim(4)  # 0..3 pending, 4 and 5 not read yet
    await now_outbox.ack([claimed[0].entry_id, claimed[1].entry_id, claimed[3].entry_id])
    assert await now_outbox.trim() == 0  # acknowledged, but younger than the maximum age

    removed = await later_outbox.trim()

    # 0 and 1 go; 3 was acknowledged but lies above 2, which is still pending.
    assert removed == 2
    kept = [fields[b"id"].decode() for _, fields in await shared.raw.xrange(STREAM_KEY)]
    assert kept == [event(n).id for n in (2, 3, 4, 5)]
    assert events_of(await now_outbox.claim(10)) == [event(2), event(4), event(5)]


@pytest.mark.parametrize("shared", ["valkey", "cluster"], indirect=True)
async def test_trimming_keeps_every_entry_while_a_sink_is_down(shared: Shared) -> None:
    """An outage long past the maximum age: nothing is acknowledged, nothing is trimmed."""
    later = time.time() + 10 * MAX_AGE
    outbox = await shared.consumer("reader", wall_clock=lambda: later)
    for n in range(50):
        await outbox.append(event(n))
    claimed = await outbox.claim(20)  # claimed and never acknowledged: the sink is down

    assert await outbox.trim() == 0
    assert await shared.raw.xlen(STREAM_KEY) == 50
    assert len(claimed + await outbox.claim(100)) == 70  # its 20 again, then the other 30
    assert (await outbox.backlog()).pending == 50


@pytest.mark.parametrize("shared", ["valkey", "cluster"], indirect=True)
async def test_a_stream_deleted_underneath_is_recreated_with_its_group(shared: Shared) -> None:
    """The stream or its group lost: a flush, or a Valkey without persistence restarted."""
    outbox = await shared.consumer("only")
    await outbox.append(event(1))
    await outbox.claim(10)
    await shared.raw.delete(STREAM_KEY)

    await outbox.append(event(2))

    assert events_of(await outbox.claim(10)) == [event(2)]


@pytest.mark.parametrize("shared", ["valkey", "cluster"], indirect=True)
async def test_consumers_that_stopped_holding_nothing_are_forgotten(shared: Shared) -> None:
    gone, busy = await shared.consumer("gone", IDLE), await shared.consumer("busy", IDLE)
    await gone.claim(10)
    await busy.append(event(1))
    await busy.claim(10)  # stops too, but holds an entry
    living = await shared.consumer("living", IDLE)
    time.sleep(IDLE * 1.5)

    await living.trim()

    names = {c["name"].decode() for c in await shared.raw.xinfo_consumers(STREAM_KEY, GROUP)}
    assert "gone" not in names
    assert "busy" in names


@pytest.mark.parametrize("shared", ["valkey", "sqlite"], indirect=True)
async def test_an_outbox_that_cannot_be_reached_says_it_is_unavailable(
    shared: Shared, tmp_path: Path, open_client: OpenClient
) -> None:
    if shared.kind == "sqlite":
        store = SqliteStore(tmp_path / "closed")  # never opened
        outbox: AuditOutbox = SqliteAuditOutbox(
            store, consumer="c", claim_idle=IDLE, clock=SystemClock()
        )
    else:
        gate = ValkeyGate()
        outbox = ValkeyAuditOutbox(
            client=open_client("valkey://127.0.0.1:1", connect_timeout=0.5),
            gate=gate,
            consumer="c",
            claim_idle=IDLE,
            max_age=MAX_AGE,
        )
    for call in (outbox.append(event(1)), outbox.claim(1), outbox.ack(["1"]), outbox.backlog()):
        with pytest.raises(AuditOutboxUnavailableError):
            await call
    if shared.kind == "valkey":
        assert not gate.open  # every Valkey adapter of the process now skips it


async def test_dead_letters_keep_one_copy_per_event_and_sink(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store")
    await store.open()
    try:
        letters = SqliteAuditDeadLetters(store, clock=SystemClock())
        await letters.keep(event(1), "backend", "400: refused")
        await letters.keep(event(1), "backend", "400: refused")
        await letters.keep(event(1), "file", "bad path")

        assert await letters.letters() == [
            ("backend", event(1), "400: refused"),
            ("file", event(1), "bad path"),
        ]
    finally:
        await store.close()
