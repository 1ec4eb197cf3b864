"""The audit shipper's task: one per process, started and stopped with the container's
resources (the server's lifespan, `run`, and the one-shot CLI commands alike)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Sequence

from loguru import logger

from application.audit_shipping import AuditShipper
from application.ports import AuditSink
from entrypoints.settings import Settings

LONGEST_POLL = 1.0  # seconds between looks at the outbox when nothing wakes the shipper
LONGEST_TRIM_INTERVAL = 60.0
SHORTEST_INTERVAL = 0.01


def consumer_name() -> str:
    """This process's name in the outbox: its host, its pid and a random part, since a pid
    comes back after a restart (in a container, always the same one)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def poll_interval(settings: Settings) -> float:
    """A quarter of `audit.claimIdle`, at most a second: each poll renews this process's
    claims, so another process never mistakes them for a stopped one's."""
    return max(SHORTEST_INTERVAL, min(LONGEST_POLL, settings.audit.claim_idle / 4))


def trim_interval(settings: Settings) -> float:
    """Half `audit.streamMaxAge`, at most a minute: entries outlive it by that at most."""
    return max(SHORTEST_INTERVAL, min(LONGEST_TRIM_INTERVAL, settings.audit.stream_max_age / 2))


async def audit_shipping(
    shipper: AuditShipper,
    sinks: Sequence[AuditSink],
    flush_within: float,
    *outlived: object,
) -> AsyncIterator[AuditShipper]:
    """A container resource: runs the shipper in a task; at shutdown stops it, ships what it
    can within `flush_within` seconds, and closes the sinks.

    `outlived` are the resources the shipper works through (the store, Valkey, the backend
    session): naming them makes the container shut this one down first, while they are
    still open. What is not delivered stays pending in the outbox, for the next start or
    another process.
    """
    task = asyncio.create_task(shipper.run(), name="audit-shipper")
    try:
        yield shipper
    finally:
        # The round under way is let finish, not cancelled: a delivery cancelled after its
        # sink took the event (a line written from a thread, a POST the backend answered)
        # would not count as done, and the flush would hand the sink the event again. Only
        # a round that outlasts the whole flush time is cancelled; the shipper then keeps
        # what it knew (which sinks took which event), and the flush goes on from there.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_within
        shipper.stop()
        finished, _ = await asyncio.wait({task}, timeout=flush_within)
        if not finished:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        held = await shipper.flush(max(0.0, deadline - loop.time()))
        if held:
            logger.warning(
                "{held} audit events were not delivered to every sink before shutdown; they"
                " stay in the outbox for the next start or another process",
                held=held,
            )
        for sink in sinks:
            try:
                await sink.close()
            except Exception as error:  # closing one must not keep the others open
                logger.warning(
                    "audit sink {sink} did not close cleanly: {error}", sink=sink.name, error=error
                )
