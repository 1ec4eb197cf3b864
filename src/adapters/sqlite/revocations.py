"""Revocations in the local store: durable, and shared by every process on the machine."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

from adapters.memory.revocations import RevocationFeed
from adapters.sqlite.store import SqliteStore, decode_time, encode_time
from application.ports import RevocationList


class SqliteRevocationList(RevocationList, RevocationFeed):
    """The `revocations` table: one row per execution, until `expires_at`.

    Times come from `clock` (seconds since the epoch) and are compared as the store's
    fixed-width UTC text, so a row whose `expires_at` has passed is the same as none; each
    revocation deletes up to `purge_batch` of those.

    As a feed, `updates` reads the whole table again only when another connection has
    committed to the file since the last look (SQLite's `data_version`, one cheap pragma):
    the rows of this process's own revocations are already in its copy.
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
        self._seen_version: int | None = None

    async def revoke(self, execution_id: str, ttl: float) -> None:
        await self.publish(execution_id, self._clock() + ttl)

    async def is_revoked(self, execution_id: str) -> bool:
        now = _text(self._clock())
        row = await self._store.read(
            lambda c: c.execute(
                "SELECT 1 FROM revocations WHERE execution_id = ? AND expires_at > ?",
                (execution_id, now),
            ).fetchone()
        )
        return row is not None

    async def publish(self, execution_id: str, until: float) -> None:
        now, expires = _text(self._clock()), _text(until)

        def write(connection: sqlite3.Connection) -> None:
            # An earlier revocation that ends later is kept as it is.
            connection.execute(
                "INSERT INTO revocations (execution_id, revoked_at, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (execution_id) DO UPDATE SET"
                " revoked_at = excluded.revoked_at, expires_at = excluded.expires_at"
                " WHERE excluded.expires_at > revocations.expires_at",
                (execution_id, now, expires),
            )
            connection.execute(
                "DELETE FROM revocations WHERE rowid IN (SELECT rowid FROM revocations"
                " WHERE expires_at <= ? LIMIT ?)",
                (now, self._purge_batch),
            )

        await self._store.write(write)

    async def updates(self) -> list[tuple[str, float]]:
        now = _text(self._clock())

        def read(connection: sqlite3.Connection) -> tuple[int, list[tuple[str, str]] | None]:
            (version,) = connection.execute("PRAGMA data_version").fetchone()
            if version == self._seen_version:
                return version, None
            rows = connection.execute(
                "SELECT execution_id, expires_at FROM revocations WHERE expires_at > ?", (now,)
            ).fetchall()
            return version, rows

        version, rows = await self._store.read(read)
        self._seen_version = version
        return [] if rows is None else [(e, _seconds(expires)) for e, expires in rows]

    async def active(self) -> list[tuple[str, float]]:
        """Every revocation that has not ended."""
        now = _text(self._clock())
        rows = await self._store.read(
            lambda c: c.execute(
                "SELECT execution_id, expires_at FROM revocations WHERE expires_at > ?", (now,)
            ).fetchall()
        )
        return [(execution_id, _seconds(expires)) for execution_id, expires in rows]


def _text(seconds: float) -> str:
    return encode_time(datetime.fromtimestamp(seconds, UTC))


def _seconds(text: str) -> float:
    return decode_time(text).timestamp()
