"""The audit outbox and dead letters in the local store: the outbox when there is no Valkey."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from loguru import logger

from adapters.sqlite.store import SqliteStore, StoreClosedError, decode_time, encode_time
from adapters.turn_batches import TurnBatches
from application.ports import (
    AuditDeadLetters,
    AuditOutbox,
    AuditOutboxUnavailableError,
    Clock,
    OutboxBacklog,
    OutboxEntry,
)
from domain.audit import AuditEvent, decode_event, decode_wire, encode_event
from domain.errors import BackendUnavailableError

T = TypeVar("T")

_Row = tuple[str, str, str]  # id, event, recorded_at
_ACK_CHUNK = 500  # row numbers per DELETE, well under SQLite's limit on bound parameters


class SqliteAuditOutbox(AuditOutbox):
    """The `audit_outbox` table, shared by every process on the store file.

    A claim is one write transaction (`BEGIN IMMEDIATE` holds the file's write lock), so two
    processes never claim the same row at once: a row is `claimed_by` one consumer, which
    renews `claimed_at` at each claim; another consumer takes it only once `claimed_at` is
    older than `claim_idle`. An acknowledged row is deleted.

    With no append in flight, a row is inserted at once; while one is, the appends made in
    one turn of the event loop are inserted in one transaction (one commit, where each would
    have had its own), and each caller returns once that transaction committed. When it
    fails, each of its callers gets the error its own insert would have had.
    """

    def __init__(
        self, store: SqliteStore, *, consumer: str, claim_idle: float, clock: Clock
    ) -> None:
        self._store = store
        self._consumer = consumer
        self._claim_idle = timedelta(seconds=claim_idle)
        self._clock = clock
        self._appends: TurnBatches[_Row] = TurnBatches(
            write_one=lambda row: self._insert([row]),
            write_many=self._insert_many,
            failed=_unavailable,
        )

    async def append(self, event: AuditEvent) -> None:
        """A second append of the same event id (a spool replayed twice) keeps one row."""
        row = (event.id, encode_event(event).decode(), encode_time(self._clock.now()))
        await self._appends.write(row)

    async def _insert_many(self, rows: list[_Row]) -> list[None]:
        await self._insert(rows)
        return [None] * len(rows)

    async def _insert(self, rows: list[_Row]) -> None:
        await self._write(
            lambda c: c.executemany(
                "INSERT INTO audit_outbox (id, event, recorded_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                rows,
            )
        )

    async def claim(self, count: int) -> list[OutboxEntry]:
        now = self._clock.now()
        stamp, idle_since = encode_time(now), encode_time(now - self._claim_idle)
        me = self._consumer

        def take(connection: sqlite3.Connection) -> list[tuple[int, str]]:
            rows: list[tuple[int, str]] = connection.execute(
                "SELECT seq, event FROM audit_outbox WHERE claimed_by = ? ORDER BY seq LIMIT ?",
                (me, count),
            ).fetchall()
            if len(rows) < count:
                rows += connection.execute(
                    "SELECT seq, event FROM audit_outbox WHERE claimed_by IS NOT NULL"
                    " AND claimed_by != ? AND claimed_at <= ? ORDER BY seq LIMIT ?",
                    (me, idle_since, count - len(rows)),
                ).fetchall()
            if len(rows) < count:
                rows += connection.execute(
                    "SELECT seq, event FROM audit_outbox WHERE claimed_by IS NULL"
                    " ORDER BY seq LIMIT ?",
                    (count - len(rows),),
                ).fetchall()
            connection.executemany(
                "UPDATE audit_outbox SET claimed_by = ?, claimed_at = ?, attempts = attempts + 1"
                " WHERE seq = ?",
                [(me, stamp, seq) for seq, _ in rows],
            )
            return rows

        entries = []
        for seq, text in await self._write(take):
            try:
                event, wire = decode_wire(text)
            except ValueError:
                await self._drop_unreadable(seq, text)
                continue
            entries.append(OutboxEntry(entry_id=str(seq), event=event, wire=wire))
        return entries

    async def ack(self, entry_ids: Sequence[str]) -> None:
        seqs = [int(entry_id) for entry_id in entry_ids]

        def delete(connection: sqlite3.Connection) -> None:
            for start in range(0, len(seqs), _ACK_CHUNK):
                chunk = seqs[start : start + _ACK_CHUNK]
                marks = ", ".join("?" * len(chunk))
                connection.execute(f"DELETE FROM audit_outbox WHERE seq IN ({marks})", chunk)  # noqa: S608 (only placeholders)

        await self._write(delete)

    async def backlog(self) -> OutboxBacklog:
        try:
            pending, oldest = await self._store.read(
                lambda c: c.execute(
                    "SELECT count(*), min(recorded_at) FROM audit_outbox"
                ).fetchone()
            )
        except (BackendUnavailableError, StoreClosedError) as error:
            raise AuditOutboxUnavailableError(str(error)) from error
        age = None
        if oldest is not None:
            age = max(0.0, (self._clock.now() - decode_time(oldest)).total_seconds())
        return OutboxBacklog(pending=pending, oldest_age=age)

    async def trim(self) -> int:
        """Nothing to trim: an acknowledged row is deleted at once."""
        return 0

    async def _drop_unreadable(self, seq: int, text: str) -> None:
        """A row no build can decode would be claimed forever: it leaves the outbox for the
        log, whole (events hold no values, only their HMACs)."""
        logger.error(
            "audit outbox row {seq} cannot be decoded and is removed; it was: {text}",
            seq=seq,
            text=text,
        )
        await self.ack([str(seq)])

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._store.write(fn)
        except (BackendUnavailableError, StoreClosedError) as error:
            raise AuditOutboxUnavailableError(str(error)) from error


class SqliteAuditDeadLetters(AuditDeadLetters):
    """The `audit_dead_letters` table: one row per refused event and sink."""

    def __init__(self, store: SqliteStore, *, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def keep(self, event: AuditEvent, sink: str, reason: str) -> None:
        row = (event.id, sink, encode_event(event).decode(), reason, encode_time(self._clock.now()))
        await self._store.write(
            lambda c: c.execute(
                "INSERT INTO audit_dead_letters (id, sink, event, reason, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id, sink) DO NOTHING",
                row,
            )
        )

    async def letters(self) -> list[tuple[str, AuditEvent, str]]:
        """Every dead letter, oldest first, as (sink, event, reason)."""
        rows = await self._store.read(
            lambda c: c.execute(
                "SELECT sink, event, reason FROM audit_dead_letters ORDER BY seq"
            ).fetchall()
        )
        return [(sink, decode_event(event), reason) for sink, event, reason in rows]


def _unavailable(error: BaseException) -> AuditOutboxUnavailableError:
    if isinstance(error, AuditOutboxUnavailableError):
        return error
    return AuditOutboxUnavailableError(str(error))
