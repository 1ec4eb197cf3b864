"""Execution contexts (and so inputs) cached in Valkey; they never change once created."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from adapters.valkey.client import ValkeyClient
from adapters.valkey.freshness import Freshness
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from application.ports import ExecutionRepository
from domain.errors import DependencyError
from domain.model import ExecutionContext


class CachedContext(msgspec.Struct, frozen=True, array_like=True):
    context: ExecutionContext
    cached_at: float


class ValkeyExecutionCache(ExecutionRepository):
    """Read-through cache of another `ExecutionRepository`'s contexts.

    - A context is cached for `ttl`; past it, it is read again from the system of record,
      and served from the cache within `stale_window` while that is unavailable.
    - Outputs and conditions go straight to the system of record.
    - Valkey unreachable: the system of record is asked directly.

    `on_lookup` hears how each read was answered: "hit" (a fresh entry), "stale" (an entry
    past `ttl`, while the system of record is unavailable) or "miss" (the system of record
    was asked, whether or not it answered).
    """

    def __init__(
        self,
        *,
        inner: ExecutionRepository,
        client: ValkeyClient,
        gate: ValkeyGate,
        ttl: float,
        stale_window: float,
        prefix: str = "cronium:",
        clock: Callable[[], float] = time.time,
        on_lookup: Callable[[str], None] = lambda result: None,
    ) -> None:
        self._inner = inner
        self._on_lookup = on_lookup
        self._client = client
        self._gate = gate
        self._freshness = Freshness(ttl=ttl, stale_window=stale_window, clock=clock)
        self._prefix = prefix
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(CachedContext)

    def context_key(self, execution_id: str) -> str:
        return f"{self._prefix}ctx:{{{execution_id}}}"

    async def get_context(self, execution_id: str) -> ExecutionContext:
        key = self.context_key(execution_id)
        entry = await self._cached(key)
        if entry is not None and self._freshness.fresh(entry.cached_at):
            self._on_lookup("hit")
            return entry.context
        try:
            context = await self._inner.get_context(execution_id)
        except DependencyError:
            if entry is not None and self._freshness.servable_stale(entry.cached_at):
                self._on_lookup("stale")
                return entry.context
            self._on_lookup("miss")
            raise
        self._on_lookup("miss")
        await self._fill(key, context)
        return context

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        await self._inner.save_output(execution_id, output, at)

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await self._inner.save_condition(execution_id, condition, at)

    async def _cached(self, key: str) -> CachedContext | None:
        if not self._gate.open:
            self._gate.fell_back("get_context")
            return None
        try:
            raw = await self._client.get(key)
        except UNAVAILABLE as error:
            self._gate.failed("get_context", error)
            return None
        self._gate.succeeded()
        if raw is None:
            return None
        try:
            return self._decoder.decode(raw)
        except msgspec.DecodeError:  # ValidationError included
            return None  # another version's entry: a miss, replaced by the fill

    async def _fill(self, key: str, context: ExecutionContext) -> None:
        if not self._gate.open:
            return
        entry = self._encoder.encode(
            CachedContext(context=context, cached_at=self._freshness.clock())
        )
        try:
            await self._client.set(key, entry, px=self._freshness.keep_ms)
        except UNAVAILABLE as error:
            self._gate.failed("fill_context", error)
