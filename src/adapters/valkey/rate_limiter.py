"""The per-execution rate limit shared by every replica, answered mostly from leases: each
process takes a few requests' worth of an execution's bucket in one atomic script and hands
them out locally until they are used up or the lease expires."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from adapters.memory.rate_limiter import InProcessRateLimiter
from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from application.ports import RateLimiter
from domain.model import RateLimitDecision

# GCRA on the server's clock (so replicas with skewed clocks agree), in microseconds. The
# key holds the theoretical arrival time (TAT): when the bucket is full again. ARGV: the
# limit, how many requests to lease, how many of an expired lease to give back first.
# Leases min(wanted, what fits): never more than the bucket holds. Returns {granted,
# microseconds}: after a grant, the bucket's backlog (until full again) as a string, since
# Lua numbers reach the client truncated to integers; when nothing fits, until the next
# request fits. Wanting 0 only gives back. A tolerance of one microsecond absorbs the
# rounding of the stored TAT.
_LEASE = """
local limit = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local returned = tonumber(ARGV[3])
local window = 60000000
local interval = window / limit
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local function store(tat)
  if tat > now then
    local keep_ms = math.ceil((tat - now) / 1000) + 1
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', keep_ms)
  else
    redis.call('DEL', KEYS[1])
  end
end
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local tat = stored - returned * interval
if tat < now then tat = now end
local fits = math.floor((window + 1 - (tat - now)) / interval)
local granted = math.min(wanted, fits)
if granted < 1 then
  if returned > 0 then store(tat) end
  return {0, math.ceil(tat + interval - now - window)}
end
tat = tat + granted * interval
store(tat)
return {granted, string.format('%.3f', tat - now)}
"""

WINDOW_MICROSECONDS = 60_000_000
DEFAULT_LEASE_TTL = 2.0
DEFAULT_LARGEST_LEASE = 32
# A lease holds at most this share of the limit, so that with a small limit (under 32 a
# minute) every request is decided by the shared bucket exactly, as without leases, and a
# larger one leaves most of the bucket to the other processes.
LEASE_SHARE_OF_LIMIT = 16
_GIVE_BACK_BATCH = 32


class _Lease:
    """Requests taken from the shared bucket in one script, handed out by this process."""

    __slots__ = ("backlog", "expires_at", "granted", "handed", "taken_at")

    def __init__(self, *, granted: int, backlog: float, taken_at: float, expires_at: float):
        self.granted = granted
        self.handed = 0
        self.backlog = backlog  # microseconds until the bucket is full, just after the lease
        self.taken_at = taken_at
        self.expires_at = expires_at

    @property
    def unused(self) -> int:
        return self.granted - self.handed


class _Unavailable:
    """What a lease attempt that found Valkey unreachable tells every request waiting on it."""


_UNAVAILABLE = _Unavailable()


class ValkeyRateLimiter(RateLimiter):
    """A token bucket per key in Valkey, `limit_per_minute` deep, refilled evenly over a
    minute, shared by every process that uses the same Valkey.

    - A process leases requests from the bucket and answers from the lease for at most
      `lease_ttl` seconds: a round trip per lease, not per request. The lease's size follows
      the key's recent rate (its last lease's requests per `lease_ttl`), from 1 for a key
      asked less than once per `lease_ttl` (each request then decided by the bucket, as
      without leases) up to `largest_lease`, and a sixteenth of the limit.
    - Leased requests are taken from the shared bucket, so all processes together never
      admit more than the bucket allows; a request may be answered up to `lease_ttl` after
      the bucket counted it. What a lease has not handed out when it expires is given back
      (`give_back_expired`, and with the next lease of the key), and all of it at `close`.
    - Concurrent requests of one key wait for one lease rather than each taking its own,
      and share its refusal.
    - Valkey unreachable: a bucket in this process takes over (`fallback`) so that scripts
      are still limited, each replica on its own, until Valkey answers again; a lease
      already taken is still handed out.
    """

    def __init__(
        self,
        *,
        client: ValkeyClient,
        gate: ValkeyGate,
        limit_per_minute: int,
        fallback: InProcessRateLimiter | None = None,
        prefix: str = "cronium:",
        lease_ttl: float = DEFAULT_LEASE_TTL,
        largest_lease: int = DEFAULT_LARGEST_LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be longer than zero")
        if largest_lease < 1:
            raise ValueError("largest_lease must be at least 1")
        self._gate = gate
        self._limit = limit_per_minute
        self._interval = WINDOW_MICROSECONDS / limit_per_minute
        self._fallback = fallback or InProcessRateLimiter(limit_per_minute)
        self._prefix = prefix
        self._lease_ttl = lease_ttl
        self._largest_lease = max(1, min(largest_lease, limit_per_minute // LEASE_SHARE_OF_LIMIT))
        self._clock = clock
        self._script = client.register_script(_LEASE)  # type: ignore[misc]
        # Each key's current lease, or its last one (kept one more `lease_ttl` after it
        # expired, for the rate its next lease is sized from).
        self._leases: dict[str, _Lease] = {}
        self._taking: dict[str, asyncio.Future[RateLimitDecision | _Unavailable | None]] = {}

    @property
    def largest_lease(self) -> int:
        """The most requests one lease may hold, the limit's share applied."""
        return self._largest_lease

    async def acquire(self, key: str) -> RateLimitDecision:
        while True:
            now = self._clock()
            lease = self._leases.get(key)
            if lease is not None and lease.handed < lease.granted and now < lease.expires_at:
                return self._hand_out(lease, now)
            taking = self._taking.get(key)
            if taking is not None:
                # Shielded: a waiter cancelled must not cancel what the others wait for.
                outcome = await asyncio.shield(taking)
            elif self._gate.open:
                outcome = await self._take(key, lease, now)
            else:
                outcome = _UNAVAILABLE
            if isinstance(outcome, RateLimitDecision):
                return outcome  # refused: so is every request that waited on this attempt
            if outcome is _UNAVAILABLE:
                self._gate.fell_back("rate_limit")
                return await self._fallback.acquire(key)
            # A lease arrived (or the attempt was cancelled): take from it, or lease again.

    async def give_back_expired(self) -> None:
        """Give back what expired leases have not handed out, and forget the keys whose last
        lease expired more than a `lease_ttl` ago (which bounds this process's memory): to
        be called every so often, as the container's resource does. While Valkey is away
        the leases wait for the next call, or the key's next lease."""
        if not self._gate.open:
            return
        now = self._clock()
        due: list[tuple[str, int]] = []
        for key, lease in list(self._leases.items()):
            if now < lease.expires_at:
                continue
            if lease.unused:
                due.append((key, lease.unused))
                lease.granted = lease.handed
            elif now >= lease.expires_at + self._lease_ttl and key not in self._taking:
                del self._leases[key]
        await self._give_back(due)

    async def close(self) -> None:
        """Give back every lease's unused requests: the process stops answering."""
        due = [(key, lease.unused) for key, lease in self._leases.items() if lease.unused]
        self._leases.clear()
        await self._give_back(due)

    def _wanted(self, previous: _Lease | None, now: float) -> int:
        """The key's rate over its last lease, in requests per `lease_ttl`, within bounds."""
        if previous is None or self._largest_lease == 1:
            return 1
        elapsed = max(now - previous.taken_at, 1e-3)
        per_lease = int(previous.handed * self._lease_ttl / elapsed)
        return max(1, min(self._largest_lease, per_lease))

    async def _take(
        self, key: str, previous: _Lease | None, sent_at: float
    ) -> RateLimitDecision | _Unavailable | None:
        """Lease requests for `key` (giving back what its expired lease did not hand out), in
        this request's own task: no task of its own, which would cost a loop iteration per
        round trip; the requests of the key that arrive meanwhile wait for its outcome."""
        returned = 0
        if previous is not None:
            # Given back by this script alone, never also by `give_back_expired`.
            returned = previous.unused
            previous.granted = previous.handed
        wanted = self._wanted(previous, sent_at)
        taking: asyncio.Future[RateLimitDecision | _Unavailable | None]
        taking = asyncio.get_running_loop().create_future()
        self._taking[key] = taking
        outcome: RateLimitDecision | _Unavailable | None = None
        try:
            granted, microseconds = await self._script(
                keys=[self._bucket(key)], args=[self._limit, wanted, returned]
            )
        except UNAVAILABLE as error:
            self._gate.mark_down(error)
            outcome = _UNAVAILABLE
        else:
            self._gate.succeeded()
            if granted:
                self._leases[key] = _Lease(
                    granted=int(granted),
                    backlog=float(microseconds),
                    taken_at=sent_at,
                    expires_at=sent_at + self._lease_ttl,
                )
            else:
                outcome = RateLimitDecision(
                    allowed=False,
                    limit=self._limit,
                    remaining=0,
                    reset_after=_seconds(int(microseconds)),
                )
        finally:
            # Cancelled, the waiters get None and try again themselves.
            del self._taking[key]
            taking.set_result(outcome)
        return outcome

    def _hand_out(self, lease: _Lease, now: float) -> RateLimitDecision:
        """One request from the lease, with the fields the bucket would have given it had
        this process taken its requests one by one: the lease's unused requests count as
        still in the bucket, and the bucket refills as it would have since the lease."""
        lease.handed += 1
        refilled = (now - lease.taken_at) * 1_000_000
        backlog = max(lease.backlog - lease.unused * self._interval - refilled, self._interval)
        remaining = math.floor((WINDOW_MICROSECONDS - backlog) / self._interval + 0.000001)
        # Until full again while requests remain, else until the next one fits.
        wait = backlog if remaining > 0 else backlog + self._interval - WINDOW_MICROSECONDS
        return RateLimitDecision(
            allowed=True, limit=self._limit, remaining=remaining, reset_after=_seconds(wait)
        )

    async def _give_back(self, due: list[tuple[str, int]]) -> None:
        # Best effort: quota that cannot be given back refills within a minute anyway.
        for start in range(0, len(due), _GIVE_BACK_BATCH):
            if not self._gate.open:
                return
            batch = due[start : start + _GIVE_BACK_BATCH]
            outcomes = await asyncio.gather(
                *(
                    self._script(keys=[self._bucket(key)], args=[self._limit, 0, unused])
                    for key, unused in batch
                ),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, UNAVAILABLE):
                    self._gate.mark_down(outcome)
                    return
                if isinstance(outcome, BaseException):
                    raise outcome

    def _bucket(self, key: str) -> str:
        return f"{self._prefix}rl:{{{key}}}"


def _seconds(microseconds: float) -> int:
    """Whole seconds, rounded up, never 0 (SPEC section 4)."""
    return max(1, math.ceil(microseconds / 1_000_000))
