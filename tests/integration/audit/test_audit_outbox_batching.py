"""Concurrent audit records share Valkey round trips: the XADDs made in one turn of the event
loop go as one pipeline, each caller still returning only once its own event is in the
stream, and falling back (spool, or AUDIT_UNAVAILABLE for an intent) as a lone XADD would.
The local store's outbox shares its transactions likewise."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from audit_kit import STREAM_KEY
from prometheus_client import CollectorRegistry
from valkey_servers import ValkeyCluster, ValkeyServer

from adapters.audit.log import DurableAuditLog
from adapters.audit.metrics import AuditMetrics
from adapters.audit.spool import FileAuditSpool
from adapters.clock import SystemClock
from adapters.sqlite.audit_outbox import SqliteAuditOutbox
from adapters.sqlite.store import SqliteStore
from adapters.valkey.audit_outbox import ValkeyAuditOutbox
from adapters.valkey.gate import ValkeyGate
from application.ports import AuditOutboxUnavailableError
from domain.audit import AuditAction, AuditDetails, AuditEvent, decode_event
from domain.errors import AuditUnavailableError

if TYPE_CHECKING:
    from conftest import OpenClient

CALLERS = 32
AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)


def event(n: int) -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id="exec-1",
        action=AuditAction.GET_VARIABLE,
        timestamp=AT,
        details=AuditDetails(outcome="ok", user_id="user-1", request_id=f"req-{n}", key="k"),
    )


class World:
    def __init__(self, client: Any, raw: Any, tmp_path: Path) -> None:
        self.raw = raw
        self.gate = ValkeyGate()
        self.outbox = ValkeyAuditOutbox(
            client=client, gate=self.gate, consumer="c", claim_idle=60.0, max_age=3600.0
        )
        self.spool = FileAuditSpool(tmp_path / "spool.jsonl")
        self.registry = CollectorRegistry()
        self.log = DurableAuditLog(
            outbox=self.outbox, spool=self.spool, metrics=AuditMetrics(self.registry)
        )

    async def stream_ids(self) -> list[str]:
        return [fields[b"id"].decode() for _, fields in await self.raw.xrange(STREAM_KEY)]

    async def reads(self) -> int:
        """Valkey's count of reads from its clients: one per round trip's worth of commands."""
        return int((await self.raw.info("stats"))["total_reads_processed"])

    def spooled(self) -> list[AuditEvent]:
        if not self.spool.path.exists():
            return []
        lines = self.spool.path.read_bytes().splitlines()
        return [decode_event(line) for line in lines if line.strip()]


@pytest.fixture
async def world(valkey_server: ValkeyServer, open_client: OpenClient, tmp_path: Path) -> World:
    url = valkey_server.url()
    return World(open_client(url, command_timeout=2.0), open_client(url), tmp_path)


async def test_concurrent_records_share_one_round_trip_and_every_event_is_persisted(
    world: World,
) -> None:
    # Connections opened before counting (opening one takes a few round trips of its own).
    await world.raw.ping()
    await asyncio.gather(*(world.log.record(event(n)) for n in range(CALLERS, CALLERS + 2)))
    before = await world.reads()

    await asyncio.gather(*(world.log.record(event(n)) for n in range(CALLERS)))

    # The INFO that reads the count is one read more. The first XADD goes alone (nothing was
    # in flight), the other 31 in one pipeline: one XADD per event would be 32 reads.
    round_trips = await world.reads() - before - 1
    assert round_trips <= 3
    assert sorted(await world.stream_ids()) == sorted(event(n).id for n in range(CALLERS + 2))
    assert world.spooled() == []


async def test_a_cluster_takes_the_batched_appends_on_the_streams_one_node(
    valkey_cluster: ValkeyCluster, open_client: OpenClient, tmp_path: Path
) -> None:
    raw = open_client(valkey_cluster.url(), mode="cluster")
    await raw.delete(STREAM_KEY)  # the cluster is shared by the module's tests
    on_cluster = World(
        open_client(valkey_cluster.url(), mode="cluster", command_timeout=2.0), raw, tmp_path
    )

    await asyncio.gather(*(on_cluster.log.record(event(n)) for n in range(CALLERS)))

    assert sorted(await on_cluster.stream_ids()) == sorted(event(n).id for n in range(CALLERS))
    assert on_cluster.spooled() == []


async def test_each_caller_returns_only_once_its_own_event_is_in_the_stream(
    world: World,
) -> None:
    missing: list[str] = []

    async def record_then_look(n: int) -> None:
        await world.log.record(event(n))
        if event(n).id not in await world.stream_ids():
            missing.append(event(n).id)

    await asyncio.gather(*(record_then_look(n) for n in range(CALLERS)))

    assert missing == []
    assert len(await world.stream_ids()) == CALLERS


async def test_a_batch_valkey_refuses_goes_to_the_spool_event_by_event(world: World) -> None:
    await world.raw.config_set("maxmemory", "1")  # every XADD is refused with OOM
    try:
        await asyncio.gather(*(world.log.record(event(n)) for n in range(CALLERS)))
    finally:
        await world.raw.config_set("maxmemory", "0")

    assert sorted(e.id for e in world.spooled()) == sorted(event(n).id for n in range(CALLERS))
    assert await world.stream_ids() == []
    assert world.gate.open  # a full Valkey refuses writes; it is not away


async def test_a_batch_that_cannot_reach_valkey_spools_every_event(
    open_client: OpenClient, tmp_path: Path, valkey_server: ValkeyServer
) -> None:
    unreachable = World(
        open_client("valkey://127.0.0.1:1", connect_timeout=0.5),
        open_client(valkey_server.url()),
        tmp_path,
    )

    await asyncio.gather(*(unreachable.log.record(event(n)) for n in range(CALLERS)))

    assert sorted(e.id for e in unreachable.spooled()) == sorted(
        event(n).id for n in range(CALLERS)
    )
    assert not unreachable.gate.open


async def test_intents_of_a_batch_that_cannot_be_written_are_refused_and_not_spooled(
    world: World,
) -> None:
    await world.raw.config_set("maxmemory", "1")
    try:
        outcomes = await asyncio.gather(
            *(world.log.record_or_refuse(event(n)) for n in range(CALLERS)),
            return_exceptions=True,
        )
    finally:
        await world.raw.config_set("maxmemory", "0")

    assert all(isinstance(outcome, AuditUnavailableError) for outcome in outcomes)
    assert world.spooled() == []
    assert await world.stream_ids() == []


class CountingStore(SqliteStore):
    """The local store, counting its write transactions."""

    writes = 0

    async def write(self, fn: Any) -> Any:
        self.writes += 1
        return await super().write(fn)


async def test_concurrent_appends_to_the_store_share_one_transaction(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    await store.open()
    try:
        outbox = SqliteAuditOutbox(store, consumer="c", claim_idle=60.0, clock=SystemClock())

        await asyncio.gather(*(outbox.append(event(n)) for n in range(CALLERS)))

        assert store.writes <= 2  # the first insert alone, the other 31 together
        claimed = await outbox.claim(100)
        assert sorted(entry.event.id for entry in claimed) == sorted(
            event(n).id for n in range(CALLERS)
        )
    finally:
        await store.close()


async def test_concurrent_appends_to_a_store_that_cannot_be_written_all_fail(
    tmp_path: Path,
) -> None:
    outbox = SqliteAuditOutbox(
        SqliteStore(tmp_path / "never-opened"), consumer="c", claim_idle=60.0, clock=SystemClock()
    )

    outcomes = await asyncio.gather(
        *(outbox.append(event(n)) for n in range(CALLERS)), return_exceptions=True
    )

    assert all(isinstance(outcome, AuditOutboxUnavailableError) for outcome in outcomes)
