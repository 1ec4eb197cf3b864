"""Idempotency-Key records in the local store, shared by every process on the machine."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

from adapters.sqlite.store import SqliteStore, decode_json, encode_json, encode_time
from application.ports import IdempotencyStore
from domain.model import IdempotencyRecord, StoredAnswer


class SqliteIdempotencyStore(IdempotencyStore):
    """The `idempotency` table: one row per (scope, key), `state` 'running' until the owner
    completes it. Times come from `clock` (seconds since the epoch; tests inject their own)
    and are compared as the store's fixed-width UTC text, so a row whose `expires_at` has
    passed is the same as an absent one.

    `begin` is one `BEGIN IMMEDIATE` transaction (read the row, replace it when absent or
    expired), so of two processes claiming one key at once exactly one wins. Expired rows
    are deleted by the claims that find them and, a few at a time, by later claims.
    """

    def __init__(
        self,
        store: SqliteStore,
        clock: Callable[[], float] = time.time,
        *,
        purge_batch: int = 100,
    ) -> None:
        self._store = store
        self._clock = clock
        self._purge_batch = purge_batch

    def _at(self, offset: float = 0.0) -> str:
        return encode_time(datetime.fromtimestamp(self._clock() + offset, UTC))

    async def begin(
        self, scope: str, key: str, request_hash: str, ttl: float
    ) -> IdempotencyRecord | None:
        now, expires = self._at(), self._at(ttl)

        def claim(connection: sqlite3.Connection) -> IdempotencyRecord | None:
            row = connection.execute(
                "SELECT request_hash, state, status, headers, body FROM idempotency"
                " WHERE scope = ? AND key = ? AND expires_at > ?",
                (scope, key, now),
            ).fetchone()
            if row is not None:
                return _record(row)
            connection.execute(
                "INSERT INTO idempotency"
                " (scope, key, request_hash, state, created_at, expires_at)"
                " VALUES (?, ?, ?, 'running', ?, ?)"
                " ON CONFLICT (scope, key) DO UPDATE SET"
                " request_hash = excluded.request_hash, state = 'running', status = NULL,"
                " headers = NULL, body = NULL, created_at = excluded.created_at,"
                " expires_at = excluded.expires_at",
                (scope, key, request_hash, now, expires),
            )
            # A few expired rows of other keys, so that the table does not grow for ever.
            connection.execute(
                "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency"
                " WHERE expires_at <= ? LIMIT ?)",
                (now, self._purge_batch),
            )
            return None

        return await self._store.write(claim)

    async def complete(self, scope: str, key: str, answer: StoredAnswer, ttl: float) -> None:
        headers = encode_json([list(pair) for pair in answer.headers])
        expires = self._at(ttl)
        await self._store.write(
            lambda c: c.execute(
                "UPDATE idempotency SET state = 'done', status = ?, headers = ?, body = ?,"
                " expires_at = ? WHERE scope = ? AND key = ?",
                (answer.status, headers, answer.body, expires, scope, key),
            )
        )

    async def abandon(self, scope: str, key: str) -> None:
        await self._store.write(
            lambda c: c.execute("DELETE FROM idempotency WHERE scope = ? AND key = ?", (scope, key))
        )


def _record(row: tuple[str, str, int | None, str | None, bytes | None]) -> IdempotencyRecord:
    request_hash, state, status, headers, body = row
    if state != "done" or status is None:
        return IdempotencyRecord(request_hash=request_hash)
    pairs = decode_json(headers) if headers else []
    answer = StoredAnswer(
        status=status,
        headers=[(str(name), str(value)) for name, value in pairs],
        body=bytes(body or b""),
    )
    return IdempotencyRecord(request_hash=request_hash, answer=answer)
