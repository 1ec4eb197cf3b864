"""The `store` audit sink: the trail in the local store's `audit_events` table, which the
`run` report and the `audit` command read back."""

from __future__ import annotations

import sqlite3

from adapters.sqlite.store import SqliteStore, StoreClosedError, encode_time
from application.ports import AuditSinkUnavailableError, AuditTrail, WireAuditSink
from domain.audit import AuditEvent, decode_event, encode_event
from domain.errors import BackendUnavailableError


class SqliteAuditSink(WireAuditSink, AuditTrail):
    """One row per event id: delivering an event a second time (a retry, a claim after a
    crash) keeps the first. Rows hold the wire form; rows written before it are still read."""

    name = "store"

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def deliver(self, event: AuditEvent) -> None:
        await self.deliver_wire(event, encode_event(event))

    async def deliver_wire(self, event: AuditEvent, wire: bytes) -> None:
        row = (
            event.id,
            event.execution_id,
            event.action.value,
            encode_time(event.timestamp),
            wire.decode(),
        )

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO audit_events (id, execution_id, action, timestamp, event)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                row,
            )

        try:
            await self._store.write(insert)
        except (BackendUnavailableError, StoreClosedError) as error:
            raise AuditSinkUnavailableError(str(error)) from error

    async def close(self) -> None:
        """Nothing to release: the store belongs to the container."""

    async def events_of(self, execution_id: str) -> list[AuditEvent]:
        rows = await self._store.read(
            lambda c: c.execute(
                "SELECT event FROM audit_events WHERE execution_id = ? ORDER BY seq",
                (execution_id,),
            ).fetchall()
        )
        return [decode_event(event) for (event,) in rows]

    async def latest(self, *, execution_id: str | None, limit: int) -> list[AuditEvent]:
        query = "SELECT event FROM audit_events ORDER BY seq DESC LIMIT ?"
        parameters: tuple[str | int, ...] = (limit,)
        if execution_id is not None:
            query = (
                "SELECT event FROM audit_events WHERE execution_id = ? ORDER BY seq DESC LIMIT ?"
            )
            parameters = (execution_id, limit)
        rows = await self._store.read(lambda c: c.execute(query, parameters).fetchall())
        return [decode_event(event) for (event,) in reversed(rows)]
