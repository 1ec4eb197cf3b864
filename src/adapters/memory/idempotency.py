"""Idempotency-Key records in this process: for tests, and the fallback of the Valkey store."""

from __future__ import annotations

import time
from collections.abc import Callable

from application.ports import IdempotencyStore
from domain.model import IdempotencyRecord, StoredAnswer


class InMemoryIdempotencyStore(IdempotencyStore):
    """Records in a dict, each expiring `ttl` seconds after it was written, by `clock`
    (seconds, monotonic by default; tests inject their own). An expired record is the same
    as an absent one; a sweep every `sweep_every` claims forgets them, bounding memory.

    Every method runs without awaiting, so on one event loop `begin` is atomic: of two
    concurrent claims of one key exactly one wins.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, sweep_every: int = 1024
    ) -> None:
        if sweep_every < 1:
            raise ValueError("sweep_every must be at least 1")
        self._clock = clock
        self._records: dict[tuple[str, str], tuple[IdempotencyRecord, float]] = {}
        self._sweep_every = sweep_every
        self._begins_until_sweep = sweep_every

    async def begin(
        self, scope: str, key: str, request_hash: str, ttl: float
    ) -> IdempotencyRecord | None:
        now = self._clock()
        self._begins_until_sweep -= 1
        if self._begins_until_sweep <= 0:
            self._begins_until_sweep = self._sweep_every
            self._sweep(now)
        found = self._records.get((scope, key))
        if found is not None and found[1] > now:
            return found[0]
        self._records[(scope, key)] = (IdempotencyRecord(request_hash=request_hash), now + ttl)
        return None

    async def complete(self, scope: str, key: str, answer: StoredAnswer, ttl: float) -> None:
        found = self._records.get((scope, key))
        if found is None:
            return  # expired and swept while the request ran: nothing left to complete
        record = IdempotencyRecord(request_hash=found[0].request_hash, answer=answer)
        self._records[(scope, key)] = (record, self._clock() + ttl)

    async def abandon(self, scope: str, key: str) -> None:
        self._records.pop((scope, key), None)

    def __len__(self) -> int:
        return len(self._records)

    def _sweep(self, now: float) -> None:
        for record_key in [k for k, (_, expires) in self._records.items() if expires <= now]:
            del self._records[record_key]
