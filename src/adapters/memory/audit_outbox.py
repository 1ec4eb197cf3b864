"""The audit outbox, spool and dead letters in memory: the fakes the shipper's tests drive.

Several `InMemoryAuditOutbox` consumers may share one `OutboxEntries`, as processes share
a stream or a store file. Each has a `refuses` switch standing for an outage.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from application.ports import (
    AuditDeadLetters,
    AuditOutbox,
    AuditOutboxUnavailableError,
    AuditSpool,
    OutboxBacklog,
    OutboxEntry,
)
from domain.audit import AuditEvent


@dataclass
class _Entry:
    event: AuditEvent
    recorded_at: float
    claimed_by: str | None = None
    claimed_at: float = 0.0


@dataclass
class OutboxEntries:
    """What a shared outbox holds: the pending entries, oldest first."""

    pending: dict[str, _Entry] = field(default_factory=dict)
    appended: int = 0

    def events(self) -> list[AuditEvent]:
        return [entry.event for entry in self.pending.values()]


class InMemoryAuditOutbox(AuditOutbox):
    def __init__(
        self,
        *,
        consumer: str = "memory",
        claim_idle: float = 60.0,
        entries: OutboxEntries | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.entries = entries if entries is not None else OutboxEntries()
        self.refuses = False
        self._claim_idle = claim_idle
        self._monotonic = monotonic

    async def append(self, event: AuditEvent) -> None:
        self._available()
        self.entries.appended += 1
        self.entries.pending[str(self.entries.appended)] = _Entry(event, self._monotonic())

    async def claim(self, count: int) -> list[OutboxEntry]:
        self._available()
        now = self._monotonic()
        entries = self.entries.pending.items()
        own = [key for key, entry in entries if entry.claimed_by == self.consumer]
        idle = [
            key
            for key, entry in entries
            if entry.claimed_by not in (None, self.consumer)
            and now - entry.claimed_at >= self._claim_idle
        ]
        new = [key for key, entry in entries if entry.claimed_by is None]
        chosen = (own + idle + new)[:count]
        for key in chosen:
            self.entries.pending[key].claimed_by = self.consumer
            self.entries.pending[key].claimed_at = now
        return [OutboxEntry(entry_id=key, event=self.entries.pending[key].event) for key in chosen]

    async def ack(self, entry_ids: Sequence[str]) -> None:
        self._available()
        for key in entry_ids:
            self.entries.pending.pop(key, None)

    async def backlog(self) -> OutboxBacklog:
        self._available()
        times = [entry.recorded_at for entry in self.entries.pending.values()]
        oldest = self._monotonic() - min(times) if times else None
        return OutboxBacklog(pending=len(times), oldest_age=oldest)

    async def trim(self) -> int:
        """Nothing to trim: an acknowledged entry is forgotten at once."""
        self._available()
        return 0

    def _available(self) -> None:
        if self.refuses:
            raise AuditOutboxUnavailableError("the in-memory outbox is switched off")


class InMemoryAuditSpool(AuditSpool):
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.refuses = False

    async def append(self, event: AuditEvent) -> None:
        if self.refuses:
            raise OSError(28, "No space left on device")
        self.events.append(event)

    async def replay(self, into: Callable[[AuditEvent], Awaitable[None]]) -> int:
        moved = 0
        while self.events:
            await into(self.events[0])
            del self.events[0]
            moved += 1
        return moved


@dataclass(frozen=True)
class DeadLetter:
    event: AuditEvent
    sink: str
    reason: str


class InMemoryAuditDeadLetters(AuditDeadLetters):
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.refuses = False

    async def keep(self, event: AuditEvent, sink: str, reason: str) -> None:
        if self.refuses:
            raise OSError(28, "No space left on device")
        self.letters.append(DeadLetter(event, sink, reason))
