from __future__ import annotations

import time
from collections.abc import Callable

from application.ports import RateLimiter
from domain.model import RateLimitDecision

WINDOW_SECONDS = 60
_NANOSECONDS = 10**9


class InProcessRateLimiter(RateLimiter):
    """A token bucket per key, `limit_per_minute` deep, refilled evenly over a minute (GCRA).

    Each key keeps one number, its theoretical arrival time (TAT): the moment its bucket is
    full again. A key whose TAT has passed is the same as an absent key, so the sweep that
    bounds memory forgets only those and never a bucket that still has requests taken.
    """

    def __init__(
        self,
        limit_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        sweep_every: int = 1024,
    ) -> None:
        if limit_per_minute < 1:
            raise ValueError("limit_per_minute must be at least 1")
        if sweep_every < 1:
            raise ValueError("sweep_every must be at least 1")
        self._limit = limit_per_minute
        # Time is counted in integer units of 1/limit ns, in which one request's share of the
        # window is a whole number: a burst's sums then never drift across a request boundary.
        self._units_per_second = _NANOSECONDS * limit_per_minute
        self._interval = WINDOW_SECONDS * _NANOSECONDS
        self._capacity = self._interval * limit_per_minute
        self._clock = clock
        self._sweep_every = sweep_every
        self._acquires_until_sweep = sweep_every
        self._full_at: dict[str, int] = {}

    async def acquire(self, key: str) -> RateLimitDecision:
        now = self._now()
        self._acquires_until_sweep -= 1
        if self._acquires_until_sweep <= 0:
            self._sweep(now)
        full_at = max(self._full_at.get(key, now), now) + self._interval
        backlog = full_at - now
        if backlog > self._capacity:
            # Refused: the bucket is unchanged; the next request fits once one interval drains.
            return self._decision(allowed=False, remaining=0, wait=backlog - self._capacity)
        self._full_at[key] = full_at
        remaining = (self._capacity - backlog) // self._interval
        if remaining > 0:
            return self._decision(allowed=True, remaining=remaining, wait=backlog)
        return self._decision(
            allowed=True, remaining=0, wait=backlog + self._interval - self._capacity
        )

    def sweep(self) -> None:
        """Forget the keys whose bucket is full again: they behave exactly as absent ones."""
        self._sweep(self._now())

    def __len__(self) -> int:
        """How many keys hold a bucket, full or not, until the next sweep."""
        return len(self._full_at)

    def _sweep(self, now: int) -> None:
        self._acquires_until_sweep = self._sweep_every
        self._full_at = {key: full_at for key, full_at in self._full_at.items() if full_at > now}

    def _now(self) -> int:
        return round(self._clock() * _NANOSECONDS) * self._limit

    def _decision(self, *, allowed: bool, remaining: int, wait: int) -> RateLimitDecision:
        seconds = -(-wait // self._units_per_second)  # rounded up
        return RateLimitDecision(
            allowed=allowed, limit=self._limit, remaining=remaining, reset_after=max(1, seconds)
        )
