"""`ValkeyRateLimiter` (one GCRA bucket per key, shared through Valkey, the header fields of
SPEC section 4) and `ValkeyExecutionCache` (contexts cached exactly, served stale while the
system of record is down), against a real valkey-server."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from adapter_kit import AT, STALE_WINDOW, TTL, Kit, ManualClock, same_json

from adapters.memory.executions import InMemoryExecutionRepository
from adapters.memory.rate_limiter import InProcessRateLimiter
from adapters.valkey.client import ValkeyClient
from adapters.valkey.executions import ValkeyExecutionCache
from adapters.valkey.rate_limiter import ValkeyRateLimiter
from application.ports import ExecutionRepository
from domain.errors import BackendUnavailableError, ExecutionNotFoundError
from domain.model import ExecutionContext, RateLimitDecision

FULL_CONTEXT = ExecutionContext(
    execution_id="exec-ü-1",
    user_id="user-7",
    job_id="job-3",
    event_id="event-9",
    metadata={
        "input": {"nested": [1, 2.5, None, {"deep": "日本語 🎉"}], "big": 2**70, "flag": True},
        "extra": {"empty": {}, "list": []},
    },
    event={"id": "event-9", "name": "Nightly", "type": "NODEJS", "tags": ["a", "b"]},
    user={"id": "user-7", "email": "someone@example.com", "name": None},
    start_time=datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC),
)


# ----------------------------------------------------------------------- rate limiter


def limiter_on(kit: Kit, client: ValkeyClient | None = None, limit: int = 20) -> ValkeyRateLimiter:
    return ValkeyRateLimiter(
        client=client or kit.open_client(kit.url), gate=kit.make_gate(), limit_per_minute=limit
    )


def summary(decisions: list[RateLimitDecision]) -> list[tuple[bool, int]]:
    return [(decision.allowed, decision.remaining) for decision in decisions]


async def test_a_burst_of_exactly_the_limit_is_allowed_then_requests_are_refused(kit: Kit) -> None:
    limiter = limiter_on(kit, limit=20)

    decisions = [await limiter.acquire("exec-1") for _ in range(22)]

    assert summary(decisions) == [(True, 19 - index) for index in range(20)] + [(False, 0)] * 2
    assert {decision.limit for decision in decisions} == {20}
    assert kit.fallbacks == []


@pytest.mark.parametrize("limit", [1, 7, 20, 1000])
async def test_the_decisions_match_the_in_process_limiter_for_the_same_sequence(
    kit: Kit, limit: int
) -> None:
    shared_limiter = limiter_on(kit, limit=limit)
    local = InProcessRateLimiter(limit)

    for _ in range(min(limit, 30) + 3):
        here, there = await local.acquire("exec-1"), await shared_limiter.acquire("exec-1")
        assert (there.allowed, there.limit) == (here.allowed, here.limit)
        # Two clocks that started apart (this process's, the server's): a refill may fall
        # between the two calls of one step on a loaded machine.
        assert abs(there.remaining - here.remaining) <= 1, (here, there)
        assert there.reset_after >= 1
        assert abs(there.reset_after - here.reset_after) <= 1, (here, there)


async def test_reset_after_is_until_full_while_requests_remain_and_until_the_next_at_zero(
    kit: Kit,
) -> None:
    limiter = limiter_on(kit, limit=3)  # one request every 20 s

    first, second, third, refused = [await limiter.acquire("exec-1") for _ in range(4)]

    assert (first.remaining, first.reset_after) == (2, 20)  # full again in 20 s
    assert (second.remaining, second.reset_after) == (1, 40)
    assert (third.remaining, third.reset_after) == (0, 20)  # the next one fits in 20 s
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.reset_after in {19, 20}


async def test_a_refused_request_takes_nothing_from_the_bucket(kit: Kit, raw: ValkeyClient) -> None:
    limiter = limiter_on(kit, limit=2)
    await limiter.acquire("exec-1")
    await limiter.acquire("exec-1")
    bucket_key = "cronium:rl:{exec-1}"
    full_at = await raw.get(bucket_key)

    for _ in range(5):
        assert not (await limiter.acquire("exec-1")).allowed

    assert await raw.get(bucket_key) == full_at
    assert 0 < await raw.pttl(bucket_key) <= 60_001  # forgotten once the bucket is full


async def test_two_limiters_on_two_clients_share_one_bucket(kit: Kit) -> None:
    first = limiter_on(kit, kit.open_client(kit.url), limit=20)
    second = limiter_on(kit, kit.open_client(kit.url), limit=20)

    started = time.monotonic()
    allowed: Counter[int] = Counter()
    for index in range(40):
        decision = await (first if index % 2 == 0 else second).acquire("exec-1")
        allowed[index % 2] += decision.allowed

    assert time.monotonic() - started < 2.5  # well within one refill (3 s)
    assert sum(allowed.values()) == 20  # not 40
    assert allowed[0] == allowed[1] == 10


async def test_each_key_has_its_own_bucket(kit: Kit) -> None:
    limiter = limiter_on(kit, limit=2)

    assert [(await limiter.acquire("exec-1")).allowed for _ in range(3)] == [True, True, False]
    assert [(await limiter.acquire("exec-2")).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.acquire("{exec-1}")).allowed  # a key with braces is its own too


# ------------------------------------------------------------------- execution cache


class CountingExecutions(ExecutionRepository):
    """An in-memory system of record that counts `get_context` calls and can be made down."""

    def __init__(self, contexts: list[ExecutionContext]) -> None:
        self.inner = InMemoryExecutionRepository(contexts)
        self.reads = 0
        self.unavailable = False

    async def get_context(self, execution_id: str) -> ExecutionContext:
        self.reads += 1
        if self.unavailable:
            raise BackendUnavailableError("the backend is down (test)")
        return await self.inner.get_context(execution_id)

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        await self.inner.save_output(execution_id, output, at)

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await self.inner.save_condition(execution_id, condition, at)


def context_cache(
    kit: Kit, executions: ExecutionRepository, client: ValkeyClient | None = None
) -> ValkeyExecutionCache:
    return ValkeyExecutionCache(
        inner=executions,
        client=client or kit.open_client(kit.url),
        gate=kit.make_gate(),
        ttl=TTL,
        stale_window=STALE_WINDOW,
        clock=kit.clock,
    )


async def test_a_context_is_read_once_then_served_from_valkey(kit: Kit) -> None:
    executions = CountingExecutions([FULL_CONTEXT])
    cache = context_cache(kit, executions)

    first = await cache.get_context(FULL_CONTEXT.execution_id)
    assert await kit.raw.exists(cache.context_key(FULL_CONTEXT.execution_id)) == 1
    second = await cache.get_context(FULL_CONTEXT.execution_id)

    assert first == second == FULL_CONTEXT
    assert executions.reads == 1


async def test_a_context_comes_back_from_another_replica_exactly(kit: Kit) -> None:
    executions = CountingExecutions([FULL_CONTEXT])
    await context_cache(kit, executions).get_context(FULL_CONTEXT.execution_id)

    read = await context_cache(kit, executions).get_context(FULL_CONTEXT.execution_id)

    assert executions.reads == 1
    assert read == FULL_CONTEXT
    assert same_json(read, FULL_CONTEXT)
    assert read.input == FULL_CONTEXT.input
    assert read.start_time == FULL_CONTEXT.start_time


async def test_a_start_time_chosen_at_the_first_read_is_the_one_every_replica_sees(
    kit: Kit,
) -> None:
    executions = CountingExecutions([ExecutionContext(execution_id="e1", user_id="u1")])
    first = await context_cache(kit, executions).get_context("e1")

    again = await context_cache(kit, executions).get_context("e1")

    assert first.start_time is not None
    assert again.start_time == first.start_time
    assert executions.reads == 1


async def test_an_unknown_execution_is_not_cached(kit: Kit) -> None:
    executions = CountingExecutions([])
    cache = context_cache(kit, executions)

    for _ in range(2):
        with pytest.raises(ExecutionNotFoundError):
            await cache.get_context("nope")

    assert executions.reads == 2
    assert await kit.raw.exists(cache.context_key("nope")) == 0


async def test_while_the_backend_is_down_a_context_past_ttl_is_served_within_the_stale_window(
    kit: Kit, clock: ManualClock
) -> None:
    executions = CountingExecutions([FULL_CONTEXT])
    cache = context_cache(kit, executions)
    await cache.get_context(FULL_CONTEXT.execution_id)
    executions.unavailable = True

    clock.advance(TTL - 1)
    assert await cache.get_context(FULL_CONTEXT.execution_id) == FULL_CONTEXT
    assert executions.reads == 1  # fresh: the backend was not asked
    clock.advance(2)
    assert await cache.get_context(FULL_CONTEXT.execution_id) == FULL_CONTEXT
    assert executions.reads == 2  # past the TTL: asked, failed, served stale
    clock.advance(STALE_WINDOW)
    with pytest.raises(BackendUnavailableError):
        await cache.get_context(FULL_CONTEXT.execution_id)


async def test_a_context_past_ttl_is_read_again_and_refreshed(kit: Kit, clock: ManualClock) -> None:
    executions = CountingExecutions([FULL_CONTEXT])
    cache = context_cache(kit, executions)
    await cache.get_context(FULL_CONTEXT.execution_id)

    clock.advance(TTL + 1)
    await cache.get_context(FULL_CONTEXT.execution_id)
    await cache.get_context(FULL_CONTEXT.execution_id)

    assert executions.reads == 2


async def test_outputs_and_conditions_go_to_the_system_of_record_only(kit: Kit) -> None:
    executions = CountingExecutions([FULL_CONTEXT])
    cache = context_cache(kit, executions)
    keys_before = await kit.raw.dbsize()

    await cache.save_output(FULL_CONTEXT.execution_id, {"result": [1, "two"]}, AT)
    await cache.save_condition(FULL_CONTEXT.execution_id, True, AT)

    assert executions.inner.outputs[FULL_CONTEXT.execution_id] == {"result": [1, "two"]}
    assert executions.inner.conditions[FULL_CONTEXT.execution_id] is True
    assert await kit.raw.dbsize() == keys_before
    with pytest.raises(ExecutionNotFoundError):
        await cache.save_output("nope", 1, AT)


async def test_a_context_entry_of_another_shape_is_a_miss_and_is_replaced(kit: Kit) -> None:
    executions = CountingExecutions([FULL_CONTEXT])
    cache = context_cache(kit, executions)
    key = cache.context_key(FULL_CONTEXT.execution_id)
    await kit.raw.set(key, msgspec.json.encode({"an": "older layout"}))

    assert await cache.get_context(FULL_CONTEXT.execution_id) == FULL_CONTEXT
    assert executions.reads == 1
    assert await context_cache(kit, executions).get_context(FULL_CONTEXT.execution_id)
    assert executions.reads == 1  # replaced by the fill


async def test_a_context_entry_that_is_not_json_is_a_miss(kit: Kit) -> None:
    executions = CountingExecutions([FULL_CONTEXT])
    cache = context_cache(kit, executions)
    await kit.raw.set(cache.context_key(FULL_CONTEXT.execution_id), b"\xff not json")

    assert await cache.get_context(FULL_CONTEXT.execution_id) == FULL_CONTEXT
