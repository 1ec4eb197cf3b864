"""The timer behind `rate_limited` events: a task that records each minute once it is over, so
the event reaches the outbox even when no further request arrives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from loguru import logger

from application.record_rate_limited import RecordRateLimited

TICK_SECONDS = 1.0


async def rate_limited_reports(
    reporter: RecordRateLimited, *outlived: object, tick: float = TICK_SECONDS
) -> AsyncIterator[RecordRateLimited]:
    """A container resource: starts the task, and at shutdown stops it and records what this
    process still owns with the count so far.

    `outlived` are the resources the audit log writes through (the store, Valkey) and the
    audit shipper: naming them makes the container shut this one down first, while they are
    still open and before the shipper's last flush.
    """
    stopping = asyncio.Event()

    async def tick_until_stopped() -> None:
        while not stopping.is_set():
            await _record(reporter, reporter.record_due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), tick)

    task = asyncio.create_task(tick_until_stopped(), name="rate-limited-reports")
    try:
        yield reporter
    finally:
        # Let a recording in progress finish rather than cancel it half-way, which could
        # record a minute twice or not at all.
        stopping.set()
        await task
        await _record(reporter, reporter.record_all)


async def _record(reporter: RecordRateLimited, step: Callable[[], Awaitable[None]]) -> None:
    try:
        await step()
    except Exception as error:  # the audit log is failing: the minutes stay owned, tried again
        logger.warning(
            "rate_limited audit events could not be recorded yet ({} pending): {}: {}",
            reporter.pending,
            type(error).__name__,
            error,
        )
