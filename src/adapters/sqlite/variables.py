from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from adapters.sqlite.store import SqliteStore, decode_json, decode_time, encode_json, encode_time
from application.ports import VariableRepository
from domain.model import Variable, VariableSummary


class SqliteVariableRepository(VariableRepository):
    """The users' variables in the local store."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def get(self, user_id: str, key: str) -> Variable | None:
        row = await self._store.read(
            lambda c: c.execute(
                "SELECT value, updated_at FROM variables WHERE user_id = ? AND key = ?",
                (user_id, key),
            ).fetchone()
        )
        if row is None:
            return None
        return Variable(key=key, value=decode_json(row[0]), updated_at=decode_time(row[1]))

    async def put(self, user_id: str, key: str, value: Any, at: datetime) -> Variable:
        row = (user_id, key, encode_json(value), encode_time(at))

        def upsert(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO variables (user_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, key)"
                " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                row,
            )

        await self._store.write(upsert)
        return Variable(key=key, value=value, updated_at=decode_time(row[3]))

    async def delete(self, user_id: str, key: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            return (
                connection.execute(
                    "DELETE FROM variables WHERE user_id = ? AND key = ?", (user_id, key)
                ).rowcount
                > 0
            )

        return await self._store.write(delete)

    async def list(self, user_id: str) -> list[VariableSummary]:
        rows = await self._store.read(
            lambda c: c.execute(
                "SELECT key, updated_at FROM variables WHERE user_id = ?", (user_id,)
            ).fetchall()
        )
        return [VariableSummary(key=key, updated_at=decode_time(at)) for key, at in rows]
