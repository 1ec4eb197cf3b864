"""Execution contexts (and so inputs) kept in this process, in front of any repository.

SPEC section 7: an execution's input and context never change, so any process may keep
them in memory. A known execution's context is then answered with no round trip to Valkey
or the system of record.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from application.ports import ExecutionRepository
from domain.model import ExecutionContext


@dataclass(frozen=True, slots=True)
class _Entry:
    context: ExecutionContext
    size: int
    expires_at: float


class InProcessExecutionCache(ExecutionRepository):
    """A bounded, expiring copy of another `ExecutionRepository`'s contexts (least recently
    used first out).

    - A context read from `inner` is kept for `ttl` seconds; each hit moves it to the end of
      the eviction order, not its expiry.
    - The copies' sizes (each context's JSON length, a measure of its input) add up to at
      most `max_bytes`; a context larger than that is answered and not kept.
    - Only answers are kept: an unknown execution (`ExecutionNotFoundError`) or an error of
      `inner` reaches the caller every time, so an execution created later is found.
    - Outputs and conditions go straight to `inner`.
    - Revocation is not this layer's concern: the edge refuses a revoked execution's tokens
      before any read.

    `on_hit` hears each read this copy answered.
    """

    def __init__(
        self,
        *,
        inner: ExecutionRepository,
        max_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        on_hit: Callable[[], None] = lambda: None,
    ) -> None:
        self._inner = inner
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._clock = clock
        self._on_hit = on_hit
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._encoder = msgspec.json.Encoder()
        self.size = 0  # the kept copies' sizes, in bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def get_context(self, execution_id: str) -> ExecutionContext:
        entry = self._entries.get(execution_id)
        if entry is not None:
            if self._clock() < entry.expires_at:
                self._entries.move_to_end(execution_id)
                self._on_hit()
                return entry.context
            self._drop(execution_id)
        context = await self._inner.get_context(execution_id)
        self._keep(execution_id, context)
        return context

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        await self._inner.save_output(execution_id, output, at)

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await self._inner.save_condition(execution_id, condition, at)

    def _keep(self, execution_id: str, context: ExecutionContext) -> None:
        size = len(self._encoder.encode(context))
        if self._ttl <= 0 or size > self._max_bytes:
            return
        if execution_id in self._entries:  # read twice at once: the later answer stays
            self._drop(execution_id)
        while self._entries and self.size + size > self._max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[execution_id] = _Entry(context, size, self._clock() + self._ttl)
        self.size += size

    def _drop(self, execution_id: str) -> None:
        self.size -= self._entries.pop(execution_id).size
