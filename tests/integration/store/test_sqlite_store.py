"""What only the SQLite store promises: durability, its file, its schema, its thread."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from adapters.audit.sinks.store import SqliteAuditSink
from adapters.sqlite.executions import SqliteExecutionRepository
from adapters.sqlite.schema import MIGRATIONS
from adapters.sqlite.store import SqliteHealthProbe, SqliteStore, StoreClosedError
from adapters.sqlite.tool_calls import SqliteToolCallLog
from adapters.sqlite.variables import SqliteVariableRepository
from application.ports import HealthProbe
from domain.audit import AuditAction, AuditDetails, AuditEvent, whole_milliseconds
from domain.errors import BackendUnavailableError
from domain.model import ExecutionContext, ExecutionOutcome, ToolCall, ToolCallRecord, ToolResult

if TYPE_CHECKING:
    from conftest import OpenStore, TickingClock

AT = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)
TABLES = {
    "executions",
    "variables",
    "tool_calls",
    "audit_events",
    "audit_outbox",
    "audit_dead_letters",
    "idempotency",
    "revocations",
}
CONTEXT = ExecutionContext(
    execution_id="exec-1",
    user_id="local",
    metadata={"input": {"city": "Zürich", "n": [1, None]}},
    event={"id": "ev", "name": "Nächtlich ✓", "type": "PYTHON"},
)
TOOL_CALL = ToolCallRecord(
    call=ToolCall(
        execution_id="exec-1",
        user_id="local",
        tool="log",
        action="write",
        params={"line": "日本"},
        request_id="req-1",
    ),
    result=ToolResult(success=True, metadata={"dryRun": True}),
    at=AT,
)
EVENT = AuditEvent(
    id="2b7f5e7c-8f7e-4c39-9d0b-5d1c9c3c1a11",
    execution_id="exec-1",
    action=AuditAction.SET_OUTPUT,
    timestamp=whole_milliseconds(AT),
    details=AuditDetails(outcome="ok", user_id="local", value_hmac="hmac-sha256:00"),
)


def tables_of(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows} - {"sqlite_sequence"}


async def test_everything_written_survives_closing_and_reopening_the_store(
    open_store: OpenStore, clock: TickingClock
) -> None:
    first = await open_store()
    executions = SqliteExecutionRepository(first, clock=clock)
    await executions.create(CONTEXT)
    started = await executions.get_context("exec-1")
    await executions.save_output("exec-1", {"rows": 3, "note": None}, AT)
    await executions.save_condition("exec-1", True, AT)
    await SqliteVariableRepository(first).put("local", "greeting", "grüß dich", AT)
    await SqliteVariableRepository(first).put("local", "nothing", None, AT)
    await SqliteToolCallLog(first).record(TOOL_CALL)
    await SqliteAuditSink(first).deliver(EVENT)
    await first.close()

    second = await open_store()
    executions = SqliteExecutionRepository(second, clock=clock)
    variables = SqliteVariableRepository(second)

    assert await executions.get_context("exec-1") == started
    assert await executions.outcome("exec-1") == ExecutionOutcome(
        execution_id="exec-1", has_output=True, output={"rows": 3, "note": None}, condition=True
    )
    greeting = await variables.get("local", "greeting")
    assert greeting is not None
    assert (greeting.value, greeting.updated_at) == ("grüß dich", AT)
    nothing = await variables.get("local", "nothing")
    assert nothing is not None
    assert nothing.value is None
    assert await SqliteToolCallLog(second).calls("exec-1") == [TOOL_CALL]
    assert await SqliteAuditSink(second).events_of("exec-1") == [EVENT]


async def test_the_first_read_time_is_the_one_stored_for_every_later_process(
    open_store: OpenStore, clock: TickingClock
) -> None:
    first = await open_store()
    await SqliteExecutionRepository(first, clock=clock).create(CONTEXT)
    second = await open_store()  # another connection, as another process would have

    by_first = await SqliteExecutionRepository(first, clock=clock).get_context("exec-1")
    by_second = await SqliteExecutionRepository(second, clock=clock).get_context("exec-1")

    assert by_second.start_time == by_first.start_time


async def test_opening_a_store_again_migrates_nothing_and_keeps_the_data(
    open_store: OpenStore, store_folder: Path
) -> None:
    store = await open_store()
    await SqliteVariableRepository(store).put("local", "k", 1, AT)
    await store.open()  # a second open of an open store changes nothing
    await store.close()
    await store.close()

    again = await open_store()
    await open_store()

    assert await again.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == len(
        MIGRATIONS
    )
    assert await again.read(tables_of) == TABLES
    assert await SqliteVariableRepository(again).get("local", "k") is not None


async def test_a_file_from_a_newer_schema_is_refused(store_folder: Path) -> None:
    store_folder.mkdir()
    with sqlite3.connect(store_folder / "runtime.db") as connection:
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.close()
    store = SqliteStore(store_folder)

    with pytest.raises(RuntimeError, match="newer"):
        await store.open()

    with pytest.raises(StoreClosedError):
        await store.read(tables_of)


async def test_the_store_file_is_in_wal_mode_with_the_pragmas_it_needs(
    open_store: OpenStore, store_folder: Path
) -> None:
    store = await open_store()

    def pragmas(connection: sqlite3.Connection) -> tuple[object, ...]:
        names = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        return tuple(connection.execute(f"PRAGMA {name}").fetchone()[0] for name in names)

    assert await store.read(pragmas) == ("wal", 1, 5000, 1)
    with sqlite3.connect(store_folder / "runtime.db") as outsider:
        assert outsider.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    outsider.close()


async def test_the_store_creates_a_private_folder_and_file(
    open_store: OpenStore, tmp_path: Path
) -> None:
    folder = tmp_path / "deep" / "er"

    store = await open_store(folder)

    assert store.path == folder / "runtime.db"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


async def test_a_write_that_fails_leaves_nothing_behind(open_store: OpenStore) -> None:
    store = await open_store()

    def insert_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute(
            "INSERT INTO variables VALUES ('local', 'k', '1', '2026-01-01T00:00:00.000000Z')"
        )
        raise LookupError("the write changed its mind")

    with pytest.raises(LookupError, match="changed its mind"):
        await store.write(insert_then_fail)

    variables = SqliteVariableRepository(store)
    assert await variables.get("local", "k") is None
    # No transaction was left open: the next write starts its own.
    assert (await variables.put("local", "k", 2, AT)).value == 2


async def test_a_failure_that_already_ended_the_transaction_is_the_one_raised(
    open_store: OpenStore,
) -> None:
    store = await open_store()

    def end_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("ROLLBACK")
        raise LookupError("the original error")

    with pytest.raises(LookupError, match="the original error"):
        await store.write(end_then_fail)
    assert (await SqliteVariableRepository(store).put("local", "k", 2, AT)).value == 2


async def test_a_closed_store_refuses_reads_and_writes(open_store: OpenStore) -> None:
    store = await open_store()
    await store.close()

    with pytest.raises(StoreClosedError, match="not open"):
        await store.read(tables_of)
    with pytest.raises(StoreClosedError):
        await SqliteVariableRepository(store).put("local", "k", 1, AT)


async def test_the_event_loop_keeps_running_while_another_process_holds_the_write_lock(
    open_store: OpenStore, store_folder: Path
) -> None:
    store = await open_store()
    variables = SqliteVariableRepository(store)
    await variables.put("local", "k", "before", AT)
    other = sqlite3.connect(store_folder / "runtime.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE variables SET value = '\"uncommitted\"'")
        # WAL: a reader is not blocked by a writer, and does not see its uncommitted work.
        read_during = await variables.get("local", "k")
        write = asyncio.create_task(variables.put("local", "k", "after", AT))

        done, _ = await asyncio.wait({write}, timeout=0.2)  # the loop is free meanwhile
        assert not done
        other.execute("COMMIT")
        await asyncio.wait_for(write, timeout=5)
    finally:
        other.close()

    assert read_during is not None
    assert read_during.value == "before"
    written = await variables.get("local", "k")
    assert written is not None
    assert written.value == "after"


async def test_an_audit_event_delivered_twice_is_kept_once(open_store: OpenStore) -> None:
    audit = SqliteAuditSink(await open_store())

    await audit.deliver(EVENT)
    await audit.deliver(EVENT)

    assert await audit.events_of("exec-1") == [EVENT]


async def test_the_health_probe_says_up_while_open_and_down_with_the_error_once_closed(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    probe = SqliteHealthProbe(store)

    healthy = await probe.check()
    await store.close()
    closed = await probe.check()

    assert isinstance(probe, HealthProbe)
    assert probe.name == "store"
    assert (healthy.status, healthy.error) == ("up", None)
    assert healthy.latency_ms >= 0
    assert closed.status == "down"
    assert closed.error is not None
    assert "not open" in closed.error
    assert SqliteHealthProbe(store, name="audit").name == "audit"


async def test_opening_a_new_file_waits_while_another_process_holds_its_write_lock(
    open_store: OpenStore, store_folder: Path
) -> None:
    store_folder.mkdir()
    other = sqlite3.connect(store_folder / "runtime.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # as a second process creating the file would
        opening = asyncio.create_task(open_store())

        done, _ = await asyncio.wait({opening}, timeout=0.2)
        assert not done
        other.execute("COMMIT")
        store = await asyncio.wait_for(opening, timeout=5)
    finally:
        other.close()

    assert await store.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"


async def test_a_lock_held_longer_than_the_busy_timeout_makes_the_store_unavailable(
    store_folder: Path, tmp_path: Path
) -> None:
    store = SqliteStore(store_folder, busy_timeout=0.1)
    await store.open()
    fresh = SqliteStore(tmp_path / "fresh", busy_timeout=0.1)
    fresh.folder.mkdir()
    writer = sqlite3.connect(store.path, isolation_level=None)
    creator = sqlite3.connect(fresh.path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        creator.execute("BEGIN IMMEDIATE")

        with pytest.raises(BackendUnavailableError, match="database is locked"):
            await SqliteVariableRepository(store).put("local", "k", 1, AT)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await fresh.open()
    finally:
        writer.close()
        creator.close()
        await store.close()

    with pytest.raises(StoreClosedError):
        await fresh.read(tables_of)
