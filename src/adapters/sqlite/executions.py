from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from adapters.clock import SystemClock
from adapters.sqlite.store import (
    SqliteStore,
    decode_json,
    decode_time,
    encode_json,
    encode_time,
)
from application.ports import Clock, ExecutionCatalog, ExecutionRepository
from domain.errors import ExecutionNotFoundError
from domain.model import ExecutionContext, ExecutionOutcome

_SELECT_CONTEXT = (
    "SELECT execution_id, user_id, job_id, event_id, metadata, event, user, start_time"
    " FROM executions WHERE execution_id = ?"
)


class SqliteExecutionRepository(ExecutionRepository, ExecutionCatalog):
    """Executions in the local store: the system of record in embedded mode."""

    def __init__(self, store: SqliteStore, *, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()

    async def create(self, context: ExecutionContext) -> None:
        """Store a new execution; raises `ValueError` when its id is already taken."""
        row = (
            context.execution_id,
            context.user_id,
            context.job_id,
            context.event_id,
            encode_json(context.metadata),
            None if context.event is None else encode_json(context.event),
            None if context.user is None else encode_json(context.user),
            None if context.start_time is None else encode_time(context.start_time),
            encode_time(self._clock.now()),
        )

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO executions (execution_id, user_id, job_id, event_id, metadata,"
                " event, user, start_time, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

        try:
            await self._store.write(insert)
        except sqlite3.IntegrityError:
            raise ValueError(f"execution {context.execution_id!r} already exists") from None

    async def get_context(self, execution_id: str) -> ExecutionContext:
        row = await self._store.read(
            lambda c: c.execute(_SELECT_CONTEXT, (execution_id,)).fetchone()
        )
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        if row[-1] is None:  # start_time
            row = await self._store.write(_stamping(execution_id, encode_time(self._clock.now())))
        return _context(row)

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        await self._update(
            execution_id,
            "UPDATE executions SET has_output = 1, output = ?, output_at = ?"
            " WHERE execution_id = ?",
            (encode_json(output), encode_time(at)),
        )

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await self._update(
            execution_id,
            "UPDATE executions SET condition = ?, condition_at = ? WHERE execution_id = ?",
            (int(condition), encode_time(at)),
        )

    async def outcome(self, execution_id: str) -> ExecutionOutcome:
        row = await self._store.read(
            lambda c: c.execute(
                "SELECT has_output, output, condition FROM executions WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()
        )
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        has_output, output, condition = row
        return ExecutionOutcome(
            execution_id=execution_id,
            has_output=bool(has_output),
            output=decode_json(output) if has_output else None,
            condition=None if condition is None else bool(condition),
        )

    async def _update(self, execution_id: str, sql: str, values: tuple[Any, ...]) -> None:
        def update(connection: sqlite3.Connection) -> int:
            return connection.execute(sql, (*values, execution_id)).rowcount

        if await self._store.write(update) == 0:
            raise ExecutionNotFoundError(execution_id)


def _stamping(execution_id: str, now: str) -> Callable[[sqlite3.Connection], Any]:
    """A write that gives the context its first-read time, unless another reader (perhaps
    another process) did first; either way it returns the context as stored."""

    def stamp(connection: sqlite3.Connection) -> Any:
        connection.execute(
            "UPDATE executions SET start_time = ? WHERE execution_id = ? AND start_time IS NULL",
            (now, execution_id),
        )
        return connection.execute(_SELECT_CONTEXT, (execution_id,)).fetchone()

    return stamp


def _context(row: Any) -> ExecutionContext:
    execution_id, user_id, job_id, event_id, metadata, event, user, start_time = row
    return ExecutionContext(
        execution_id=execution_id,
        user_id=user_id,
        job_id=job_id,
        event_id=event_id,
        metadata=decode_json(metadata),
        event=None if event is None else decode_json(event),
        user=None if user is None else decode_json(user),
        start_time=decode_time(start_time),
    )
