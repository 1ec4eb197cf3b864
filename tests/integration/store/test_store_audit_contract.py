"""The `AuditTrail` contract, held by the in-memory log and by the `store` audit sink; and what
the store sink adds: one row per event id, the wire form on disk, older rows still read."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
import pytest

from adapters.audit.sinks.store import SqliteAuditSink
from adapters.memory.audit import InMemoryAuditLog
from adapters.sqlite.store import SqliteStore
from application.ports import AuditSinkUnavailableError, AuditTrail
from domain.audit import AuditAction, AuditDetails, AuditEvent, encode_event

if TYPE_CHECKING:
    from conftest import OpenStore

AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)


def event(n: int, execution_id: str | None = "exec-1", **details: object) -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id=execution_id,
        action=AuditAction.SET_VARIABLE,
        timestamp=AT + timedelta(milliseconds=n),
        details=AuditDetails(outcome="ok", key=f"key-{n}", **details),  # type: ignore[arg-type]
    )


@dataclass
class Trail:
    """A trail and the way events reach it (the outbox's `record`, or a sink's `deliver`)."""

    trail: AuditTrail
    add: Callable[[AuditEvent], Awaitable[None]]


@pytest.fixture(params=["memory", "store sink"])
async def trail(request: pytest.FixtureRequest, open_store: OpenStore) -> Trail:
    if request.param == "memory":
        log = InMemoryAuditLog()
        return Trail(log, log.record)
    sink = SqliteAuditSink(await open_store())
    return Trail(sink, sink.deliver)


@pytest.fixture
async def store(open_store: OpenStore) -> SqliteStore:
    return await open_store()


@pytest.fixture
def sink(store: SqliteStore) -> SqliteAuditSink:
    return SqliteAuditSink(store)


async def test_an_execution_with_no_events_has_an_empty_trail(trail: Trail) -> None:
    assert await trail.trail.events_of("exec-1") == []
    assert await trail.trail.latest(execution_id=None, limit=10) == []


async def test_an_executions_events_come_back_oldest_first_and_only_its_own(trail: Trail) -> None:
    mine = [event(n) for n in range(5)]
    for n, item in enumerate(mine):
        await trail.add(item)
        await trail.add(event(100 + n, execution_id="exec-2"))
    await trail.add(event(200, execution_id=None))

    assert await trail.trail.events_of("exec-1") == mine
    assert len(await trail.trail.events_of("exec-2")) == 5


async def test_an_event_with_every_detail_is_read_back_unchanged(trail: Trail) -> None:
    full = AuditEvent(
        id="6f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        execution_id="exec-1",
        action=AuditAction.EXECUTE_TOOL_ACTION,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        details=AuditDetails(
            outcome="TOOL_FAILED",
            user_id="user-1",
            event_id="event-1",
            job_id="job-1",
            request_id="req-1",
            client_address="10.0.0.7",
            key="ünïcødé/key ✓",
            tool="slack",
            tool_action="send_message",
            value_hmac="hmac-sha256:" + "ab" * 32,
            intent_id="intent-1",
            count=3,
        ),
    )

    await trail.add(full)

    assert await trail.trail.events_of("exec-1") == [full]


@pytest.mark.parametrize("action", list(AuditAction), ids=[a.value for a in AuditAction])
async def test_every_action_is_kept_as_itself(trail: Trail, action: AuditAction) -> None:
    item = AuditEvent(
        id="id-1",
        execution_id="exec-1",
        action=action,
        timestamp=AT,
        details=AuditDetails(outcome="ok"),
    )

    await trail.add(item)

    [stored] = await trail.trail.events_of("exec-1")
    assert stored == item
    assert stored.action is action


async def test_the_latest_events_are_the_newest_few_oldest_first(trail: Trail) -> None:
    for n in range(6):
        await trail.add(event(n, execution_id="exec-1" if n % 2 else "exec-2"))

    assert await trail.trail.latest(execution_id=None, limit=3) == [
        event(3),
        event(4, "exec-2"),
        event(5),
    ]
    assert await trail.trail.latest(execution_id="exec-1", limit=2) == [event(3), event(5)]
    assert await trail.trail.latest(execution_id="exec-1", limit=50) == [
        event(1),
        event(3),
        event(5),
    ]
    assert await trail.trail.latest(execution_id="exec-9", limit=5) == []


# The store sink


async def test_delivering_an_event_again_keeps_one_row_the_first(
    sink: SqliteAuditSink, store: SqliteStore
) -> None:
    await sink.deliver(event(1))
    await sink.deliver(event(2))
    await sink.deliver(event(1))
    await sink.deliver(msgspec.structs.replace(event(1), execution_id="exec-other"))

    assert await sink.events_of("exec-1") == [event(1), event(2)]
    assert await sink.events_of("exec-other") == []
    rows = await store.read(lambda c: c.execute("SELECT count(*) FROM audit_events").fetchone())
    assert rows == (2,)


async def test_the_store_keeps_each_event_in_its_wire_form(
    sink: SqliteAuditSink, store: SqliteStore
) -> None:
    await sink.deliver(event(1, user_id="user-1"))

    [(stored,)] = await store.read(lambda c: c.execute("SELECT event FROM audit_events").fetchall())
    assert stored.encode() == encode_event(event(1, user_id="user-1"))
    assert json.loads(stored)["details"]["userId"] == "user-1"


async def test_rows_the_store_kept_before_the_wire_form_are_still_read(
    sink: SqliteAuditSink, store: SqliteStore
) -> None:
    older = AuditEvent(
        id="old-1",
        execution_id="exec-1",
        action=AuditAction.GET_VARIABLE,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        details=AuditDetails(outcome="VARIABLE_NOT_FOUND", user_id="local", key="k"),
    )
    # What the store wrote until the wire form: msgspec's own encoding, snake_case, microseconds.
    await store.write(
        lambda c: c.execute(
            "INSERT INTO audit_events (id, execution_id, action, timestamp, event)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                "old-1",
                "exec-1",
                "get_variable",
                "2026-01-02T03:04:05.123456Z",
                msgspec.json.encode(older).decode(),
            ),
        )
    )
    await sink.deliver(event(1))

    assert await sink.events_of("exec-1") == [older, event(1)]


async def test_a_store_that_cannot_be_written_makes_the_sink_unavailable(
    sink: SqliteAuditSink, store: SqliteStore
) -> None:
    await store.close()

    with pytest.raises(AuditSinkUnavailableError):
        await sink.deliver(event(1))
    assert sink.name == "store"
