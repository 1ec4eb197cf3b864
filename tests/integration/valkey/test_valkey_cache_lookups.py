"""What the Valkey caches tell the metrics about each read (`on_lookup`): a hit, a stale
entry served while the system of record is down, or a miss; against a real valkey-server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from adapter_kit import AT, STALE_WINDOW, TTL, Kit, ManualClock
from valkey_servers import free_port

from adapters.memory.executions import InMemoryExecutionRepository
from adapters.valkey.executions import ValkeyExecutionCache
from application.ports import ExecutionRepository
from domain.errors import BackendUnavailableError
from domain.model import ExecutionContext

CONTEXT = ExecutionContext(execution_id="e1", user_id="u1", metadata={"input": 1})


class SwitchableExecutions(ExecutionRepository):
    """An in-memory system of record that can be made unavailable."""

    def __init__(self) -> None:
        self.inner = InMemoryExecutionRepository([CONTEXT])
        self.unavailable = False

    async def get_context(self, execution_id: str) -> ExecutionContext:
        if self.unavailable:
            raise BackendUnavailableError("the backend is down (test)")
        return await self.inner.get_context(execution_id)

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        await self.inner.save_output(execution_id, output, at)

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await self.inner.save_condition(execution_id, condition, at)


async def test_variable_reads_are_heard_as_miss_hit_stale_then_miss(
    kit: Kit, clock: ManualClock
) -> None:
    heard: list[str] = []
    cache = kit.make_cache(kit.open_client(kit.url), kit.store, clock=clock, on_lookup=heard.append)
    await kit.store.put("u1", "k", 1, AT)

    await cache.get("u1", "k")  # nothing cached yet
    await cache.get("u1", "k")
    await cache.get("u1", "never-set")  # a miss, then its tombstone is a hit
    await cache.get("u1", "never-set")
    kit.store.unavailable = True
    clock.advance(TTL + 1)
    await cache.get("u1", "k")
    clock.advance(STALE_WINDOW)
    with pytest.raises(BackendUnavailableError):
        await cache.get("u1", "k")

    assert heard == ["miss", "hit", "miss", "hit", "stale", "miss"]


async def test_a_write_leaves_an_entry_the_next_read_hits(kit: Kit) -> None:
    heard: list[str] = []
    cache = kit.make_cache(kit.open_client(kit.url), kit.store, on_lookup=heard.append)

    await cache.put("u1", "k", {"v": 1}, AT)
    await cache.get("u1", "k")

    assert heard == ["hit"]


async def test_a_read_while_valkey_does_not_answer_is_a_miss(kit: Kit) -> None:
    heard: list[str] = []
    nowhere = kit.open_client(f"valkey://127.0.0.1:{free_port()}")
    cache = kit.make_cache(nowhere, kit.store, on_lookup=heard.append)
    await kit.store.put("u1", "k", 1, AT)

    assert (await cache.get("u1", "k")) is not None

    assert heard == ["miss"]


async def test_context_reads_are_heard_as_miss_hit_stale_then_miss(
    kit: Kit, clock: ManualClock
) -> None:
    heard: list[str] = []
    executions = SwitchableExecutions()
    cache = ValkeyExecutionCache(
        inner=executions,
        client=kit.open_client(kit.url),
        gate=kit.make_gate(),
        ttl=TTL,
        stale_window=STALE_WINDOW,
        clock=clock,
        on_lookup=heard.append,
    )

    await cache.get_context("e1")
    await cache.get_context("e1")
    executions.unavailable = True
    clock.advance(TTL + 1)
    await cache.get_context("e1")
    clock.advance(STALE_WINDOW)
    with pytest.raises(BackendUnavailableError):
        await cache.get_context("e1")

    assert heard == ["miss", "hit", "stale", "miss"]
