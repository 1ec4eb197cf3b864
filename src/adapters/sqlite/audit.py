from __future__ import annotations

import sqlite3

import msgspec

from adapters.sqlite.store import SqliteStore, encode_time
from application.ports import AuditLog, AuditTrail
from domain.audit import AuditEvent

_EVENT = msgspec.json.Decoder(AuditEvent)


class SqliteAuditLog(AuditLog, AuditTrail):
    """The "store" audit sink: events kept in the local store, readable per execution."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def record(self, event: AuditEvent) -> None:
        """Persist the event; recording an event id a second time (a retry) keeps one."""
        row = (
            event.id,
            event.execution_id,
            event.action.value,
            encode_time(event.timestamp),
            msgspec.json.encode(event).decode(),
        )

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO audit_events (id, execution_id, action, timestamp, event)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                row,
            )

        await self._store.write(insert)

    async def events_of(self, execution_id: str) -> list[AuditEvent]:
        rows = await self._store.read(
            lambda c: c.execute(
                "SELECT event FROM audit_events WHERE execution_id = ? ORDER BY seq",
                (execution_id,),
            ).fetchall()
        )
        return [_EVENT.decode(event) for (event,) in rows]
