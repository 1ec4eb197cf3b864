"""The timer behind the rate limiter's leases: a task that gives back what expired leases did
not hand out, so that another process can use it, and gives back every lease at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from loguru import logger

from adapters.valkey.rate_limiter import ValkeyRateLimiter


async def returning_leases(
    limiter: Callable[[], ValkeyRateLimiter], wanted: bool, lease_ttl: float, *outlived: object
) -> AsyncIterator[None]:
    """A container resource: every half `lease_ttl`, gives back the expired leases' unused
    requests; at shutdown, all of them. Takes the limiter's provider, so that nothing of
    Valkey is built where it is not `wanted`.

    `outlived` are the resources the limiter talks through (Valkey): naming them makes the
    container shut this one down first, while they are still open.
    """
    if not wanted:
        yield None
        return
    leases = limiter()
    stopping = asyncio.Event()

    async def give_back_until_stopped() -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), lease_ttl / 2)
            if not stopping.is_set():
                await _give_back(leases.give_back_expired)

    task = asyncio.create_task(give_back_until_stopped(), name="rate-limit-leases")
    try:
        yield None
    finally:
        stopping.set()
        await task
        await _give_back(leases.close)


async def _give_back(step: Callable[[], Awaitable[None]]) -> None:
    try:
        await step()
    except Exception as error:  # a bug: the leases' quota refills within a minute anyway
        logger.opt(exception=error).error("rate-limit leases could not be given back")
