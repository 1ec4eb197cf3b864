from __future__ import annotations

import pytest

from adapters.memory.rate_limiter import InProcessRateLimiter
from domain.model import RateLimitDecision


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def take(limiter: InProcessRateLimiter, key: str, times: int) -> list[RateLimitDecision]:
    return [await limiter.acquire(key) for _ in range(times)]


async def test_a_burst_of_exactly_the_limit_is_allowed_and_the_next_request_refused() -> None:
    limiter = InProcessRateLimiter(5, clock=FakeClock())

    burst = await take(limiter, "exec-1", 5)
    refused = await limiter.acquire("exec-1")

    assert all(decision.allowed for decision in burst)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.limit == 5


async def test_remaining_counts_down_with_each_request() -> None:
    limiter = InProcessRateLimiter(4, clock=FakeClock())

    decisions = await take(limiter, "exec-1", 5)

    assert [decision.remaining for decision in decisions] == [3, 2, 1, 0, 0]


async def test_reset_after_is_the_time_until_the_bucket_is_full_while_requests_remain() -> None:
    limiter = InProcessRateLimiter(6, clock=FakeClock())  # one request every 10 s

    decisions = await take(limiter, "exec-1", 3)

    assert [decision.reset_after for decision in decisions] == [10, 20, 30]


async def test_reset_after_is_the_time_until_the_next_request_once_none_remain() -> None:
    limiter = InProcessRateLimiter(6, clock=FakeClock())

    last = (await take(limiter, "exec-1", 6))[-1]

    assert (last.allowed, last.remaining, last.reset_after) == (True, 0, 10)


async def test_reset_after_of_a_refused_request_is_rounded_up_and_never_zero() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(6, clock=clock)
    await take(limiter, "exec-1", 6)

    clock.advance(7.5)
    halfway = await limiter.acquire("exec-1")
    clock.advance(2.4999)
    almost = await limiter.acquire("exec-1")

    assert (halfway.allowed, halfway.reset_after) == (False, 3)
    assert (almost.allowed, almost.remaining, almost.reset_after) == (False, 0, 1)


async def test_reset_after_rounds_a_partly_refilled_bucket_up_to_whole_seconds() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(6, clock=clock)
    await take(limiter, "exec-1", 2)

    clock.advance(4.2)
    decision = await limiter.acquire("exec-1")

    assert (decision.remaining, decision.reset_after) == (3, 26)


async def test_one_request_is_allowed_again_after_one_emission_interval() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(6, clock=clock)
    await take(limiter, "exec-1", 6)

    clock.advance(10)
    again = await limiter.acquire("exec-1")
    refused = await limiter.acquire("exec-1")

    assert (again.allowed, again.remaining, again.reset_after) == (True, 0, 10)
    assert not refused.allowed


async def test_the_bucket_is_full_again_a_minute_after_the_burst() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(6, clock=clock)
    await take(limiter, "exec-1", 7)

    clock.advance(60)
    decisions = await take(limiter, "exec-1", 7)

    assert [decision.allowed for decision in decisions] == [True] * 6 + [False]


async def test_a_large_limit_allows_exactly_its_burst_at_any_clock_value() -> None:
    limiter = InProcessRateLimiter(1000, clock=FakeClock(12_345_678.9))

    decisions = await take(limiter, "exec-1", 1001)

    assert sum(decision.allowed for decision in decisions) == 1000
    assert [decision.remaining for decision in decisions[-3:]] == [1, 0, 0]
    assert decisions[-2].reset_after == 1
    assert decisions[0].reset_after == 1
    assert decisions[998].reset_after == 60


async def test_keys_have_independent_buckets() -> None:
    limiter = InProcessRateLimiter(2, clock=FakeClock())
    await take(limiter, "exec-1", 3)

    other = await limiter.acquire("exec-2")

    assert (other.allowed, other.remaining) == (True, 1)


async def test_a_sweep_forgets_full_buckets_and_keeps_partly_used_ones() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(6, clock=clock)
    await limiter.acquire("idle")  # full again 10 s later
    await take(limiter, "busy", 4)  # full again 40 s later

    clock.advance(20)
    limiter.sweep()
    busy = await limiter.acquire("busy")

    assert len(limiter) == 1
    assert (busy.remaining, busy.reset_after) == (3, 30)


async def test_a_sweep_runs_by_itself_every_so_many_acquires() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(6, clock=clock, sweep_every=3)
    await limiter.acquire("a")
    await limiter.acquire("b")
    await take(limiter, "busy", 4)  # the third acquire sweeps; nothing is full yet

    clock.advance(15)
    await limiter.acquire("c")
    await limiter.acquire("d")
    await limiter.acquire("e")  # sweeps: "a" and "b" are full again, "busy" is not

    assert len(limiter) == 4
    assert (await limiter.acquire("busy")).remaining == 2


async def test_a_forgotten_bucket_behaves_like_a_full_one() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(3, clock=clock)
    before = await limiter.acquire("exec-1")

    clock.advance(25)
    limiter.sweep()
    after = await limiter.acquire("exec-1")

    assert len(limiter) == 1
    assert after == before


@pytest.mark.parametrize(("limit", "sweep_every"), [(0, 1024), (10, 0)])
def test_a_limiter_refuses_settings_it_cannot_honour(limit: int, sweep_every: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InProcessRateLimiter(limit, sweep_every=sweep_every)
