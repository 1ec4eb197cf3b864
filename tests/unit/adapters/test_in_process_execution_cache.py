"""The in-process copy of execution contexts: a known execution's second read asks nothing
of the repository behind it, an unknown one or an error is never kept, the size bound holds
(least recently used out first), and entries expire with an injected clock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from adapters.memory.execution_cache import InProcessExecutionCache
from adapters.memory.executions import InMemoryExecutionRepository
from application.ports import ExecutionRepository
from domain.errors import BackendUnavailableError, ExecutionNotFoundError
from domain.model import ExecutionContext

AT = datetime(2026, 11, 29, 1, 2, 3, tzinfo=UTC)
TTL = 600.0


class CountedExecutions(ExecutionRepository):
    """An in-memory repository that counts its calls and can be made unavailable."""

    def __init__(self, *contexts: ExecutionContext) -> None:
        self.inner = InMemoryExecutionRepository(list(contexts))
        self.calls: Counter[str] = Counter()
        self.unavailable = False

    async def get_context(self, execution_id: str) -> ExecutionContext:
        self.calls["get_context"] += 1
        if self.unavailable:
            raise BackendUnavailableError("down (test)")
        return await self.inner.get_context(execution_id)

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        self.calls["save_output"] += 1
        await self.inner.save_output(execution_id, output, at)

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        self.calls["save_condition"] += 1
        await self.inner.save_condition(execution_id, condition, at)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def execution(execution_id: str, payload: str = "") -> ExecutionContext:
    return ExecutionContext(
        execution_id=execution_id,
        user_id="u1",
        metadata={"input": {"payload": payload}},
        start_time=AT,
    )


def size_of(context: ExecutionContext) -> int:
    return len(msgspec.json.encode(context))


def cache_of(
    inner: ExecutionRepository, *, max_bytes: int = 1 << 20, ttl: float = TTL, **options: Any
) -> InProcessExecutionCache:
    return InProcessExecutionCache(inner=inner, max_bytes=max_bytes, ttl=ttl, **options)


async def test_a_known_executions_second_read_asks_nothing_of_the_repository() -> None:
    inner = CountedExecutions(execution("e1", "hello"))
    hits: list[None] = []
    cache = cache_of(inner, on_hit=lambda: hits.append(None))

    first = await cache.get_context("e1")
    second = await cache.get_context("e1")

    assert first == second == execution("e1", "hello")
    assert second.input == {"payload": "hello"}
    assert inner.calls["get_context"] == 1
    assert len(hits) == 1


async def test_an_unknown_execution_is_asked_about_every_time_and_found_once_created() -> None:
    inner = CountedExecutions()
    cache = cache_of(inner)

    for _ in range(2):
        with pytest.raises(ExecutionNotFoundError):
            await cache.get_context("later")
    inner.inner.add(execution("later"))

    assert (await cache.get_context("later")).execution_id == "later"
    assert inner.calls["get_context"] == 3
    assert len(cache) == 1


async def test_an_error_of_the_repository_is_not_kept() -> None:
    inner = CountedExecutions(execution("e1"))
    inner.unavailable = True
    cache = cache_of(inner)

    with pytest.raises(BackendUnavailableError):
        await cache.get_context("e1")
    inner.unavailable = False

    assert (await cache.get_context("e1")).execution_id == "e1"
    assert inner.calls["get_context"] == 2


async def test_the_size_bound_holds_and_the_least_recently_read_goes_first() -> None:
    contexts = [execution(f"e{n}", "x" * 100) for n in range(4)]
    inner = CountedExecutions(*contexts)
    room_for_three = 3 * size_of(contexts[0])
    cache = cache_of(inner, max_bytes=room_for_three)

    for execution_id in ("e0", "e1", "e2"):
        await cache.get_context(execution_id)
    await cache.get_context("e0")  # e0 read again: e1 is now the least recently read
    await cache.get_context("e3")  # no room for a fourth: e1 goes

    assert len(cache) == 3
    assert cache.size <= room_for_three
    before = inner.calls["get_context"]
    for execution_id in ("e0", "e2", "e3"):
        await cache.get_context(execution_id)
    assert inner.calls["get_context"] == before  # all three answered from memory
    await cache.get_context("e1")
    assert inner.calls["get_context"] == before + 1  # the evicted one asked again
    assert cache.size <= room_for_three


async def test_a_context_larger_than_the_bound_is_answered_and_not_kept() -> None:
    small, large = execution("small"), execution("large", "x" * 1000)
    inner = CountedExecutions(small, large)
    cache = cache_of(inner, max_bytes=size_of(small) + 10)
    await cache.get_context("small")

    assert (await cache.get_context("large")).input == {"payload": "x" * 1000}
    assert (await cache.get_context("large")).execution_id == "large"

    assert inner.calls["get_context"] == 3
    assert len(cache) == 1  # the small one stays
    await cache.get_context("small")
    assert inner.calls["get_context"] == 3


async def test_an_entry_expires_after_the_ttl_by_the_injected_clock() -> None:
    inner = CountedExecutions(execution("e1"))
    clock = ManualClock()
    cache = cache_of(inner, ttl=60.0, clock=clock)

    await cache.get_context("e1")
    clock.now += 59.9
    await cache.get_context("e1")
    assert inner.calls["get_context"] == 1
    clock.now += 0.1  # 60 s after it was read; the hit above did not extend it
    await cache.get_context("e1")
    assert inner.calls["get_context"] == 2
    clock.now += 59.9
    await cache.get_context("e1")
    assert inner.calls["get_context"] == 2  # the new entry's own 60 s


async def test_a_zero_ttl_keeps_nothing() -> None:
    inner = CountedExecutions(execution("e1"))
    cache = cache_of(inner, ttl=0.0)

    await cache.get_context("e1")
    await cache.get_context("e1")

    assert inner.calls["get_context"] == 2
    assert len(cache) == 0


async def test_outputs_and_conditions_go_to_the_repository() -> None:
    inner = CountedExecutions(execution("e1"))
    cache = cache_of(inner)

    await cache.save_output("e1", {"done": True}, AT)
    await cache.save_condition("e1", True, AT)

    assert inner.inner.outputs == {"e1": {"done": True}}
    assert inner.inner.conditions == {"e1": True}
    with pytest.raises(ExecutionNotFoundError):
        await cache.save_output("nope", 1, AT)
