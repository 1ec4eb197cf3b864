"""The per-execution rate limit shared by every replica: one atomic script per request."""

from __future__ import annotations

from adapters.memory.rate_limiter import InProcessRateLimiter
from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from application.ports import RateLimiter
from domain.model import RateLimitDecision

# GCRA on the server's clock (so replicas with skewed clocks agree), in microseconds. The
# key holds the theoretical arrival time: when the bucket is full again. Returns
# {allowed, remaining, microseconds}: until full when requests remain, else until the next
# request is allowed. A tolerance of one microsecond absorbs the float division.
_GCRA = """
local limit = tonumber(ARGV[1])
local window = 60000000
local interval = window / limit
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local backlog = tat + interval - now
if backlog > window + 1 then
  return {0, 0, math.ceil(backlog - window)}
end
local keep_ms = math.ceil(backlog / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', keep_ms)
local remaining = math.floor((window - backlog) / interval + 0.000001)
if remaining > 0 then
  return {1, remaining, math.ceil(backlog)}
end
return {1, 0, math.ceil(backlog + interval - window)}
"""


class ValkeyRateLimiter(RateLimiter):
    """A token bucket per key in Valkey, `limit_per_minute` deep, refilled evenly over a
    minute, shared by every process that uses the same Valkey.

    Valkey unreachable: a bucket in this process takes over (`fallback`) so that scripts
    are still limited, each replica on its own, until Valkey answers again.
    """

    def __init__(
        self,
        *,
        client: ValkeyClient,
        gate: ValkeyGate,
        limit_per_minute: int,
        fallback: InProcessRateLimiter | None = None,
        prefix: str = "cronium:",
    ) -> None:
        self._gate = gate
        self._limit = limit_per_minute
        self._fallback = fallback or InProcessRateLimiter(limit_per_minute)
        self._prefix = prefix
        self._script = client.register_script(_GCRA)  # type: ignore[misc]

    async def acquire(self, key: str) -> RateLimitDecision:
        if not self._gate.open:
            self._gate.fell_back("rate_limit")
            return await self._fallback.acquire(key)
        try:
            allowed, remaining, wait_us = await self._script(
                keys=[f"{self._prefix}rl:{{{key}}}"], args=[self._limit]
            )
        except UNAVAILABLE as error:
            self._gate.failed("rate_limit", error)
            return await self._fallback.acquire(key)
        self._gate.succeeded()
        return RateLimitDecision(
            allowed=bool(allowed),
            limit=self._limit,
            remaining=int(remaining),
            reset_after=max(1, -(-int(wait_us) // 1_000_000)),
        )
