"""The audit trail's metrics and log lines: what the log and the shipper report."""

from __future__ import annotations

import time

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge

from application.ports import AuditShippingObserver, OutboxBacklog

TROUBLE_EVERY = 60.0  # seconds between two warnings about the same trouble


class AuditMetrics(AuditShippingObserver):
    """`cronium_runtime_audit_*` in the container's registry, and the shipper's log lines.

    The log names events by id only (they carry no values anyway). A sink's outage is
    logged when it starts and when it ends, not at every retry; the retries are counted.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._recorded = Counter(
            "cronium_runtime_audit_events_recorded_total",
            "Audit events persisted before the reply, by where: outbox, spool (the outbox"
            " could not be written), log (neither could: the event is in the error log).",
            ["where"],
            registry=registry,
        )
        self._delivered = Counter(
            "cronium_runtime_audit_deliveries_total",
            "Audit events a sink accepted.",
            ["sink"],
            registry=registry,
        )
        self._retried = Counter(
            "cronium_runtime_audit_delivery_retries_total",
            "Deliveries to a sink that failed and will be tried again.",
            ["sink"],
            registry=registry,
        )
        self._rejected = Counter(
            "cronium_runtime_audit_rejected_total",
            "Audit events a sink refused for good, kept in the local store's dead letters.",
            ["sink"],
            registry=registry,
        )
        self._replayed = Counter(
            "cronium_runtime_audit_spool_replayed_total",
            "Spooled audit events moved to the outbox.",
            registry=registry,
        )
        # Every process reports the same shared outbox: under several workers, the live
        # processes' largest reading is the one shown.
        self._backlog = Gauge(
            "cronium_runtime_audit_backlog",
            "Audit events in the outbox not yet delivered to every sink.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._oldest = Gauge(
            "cronium_runtime_audit_oldest_pending_seconds",
            "Age of the oldest audit event not yet delivered to every sink (0: none).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._troubles: dict[str, float] = {}  # what went wrong -> when it was last logged
        # The labelled children, looked up once: `labels()` takes a lock and builds a key at
        # each call, and these two are counted once per event.
        self._recorded_in: dict[str, Counter] = {}
        self._delivered_to: dict[str, Counter] = {}

    def recorded(self, where: str) -> None:
        counter = self._recorded_in.get(where)
        if counter is None:
            counter = self._recorded_in[where] = self._recorded.labels(where=where)
        counter.inc()

    def delivered(self, sink: str) -> None:
        counter = self._delivered_to.get(sink)
        if counter is None:
            counter = self._delivered_to[sink] = self._delivered.labels(sink=sink)
        counter.inc()

    def retrying(self, sink: str, error: str, delay: float, *, first: bool) -> None:
        self._retried.labels(sink=sink).inc()
        if first:
            logger.warning(
                "audit sink {sink} is unavailable ({error}); its events wait in the outbox and"
                " it is tried again in {delay:.1f} s",
                sink=sink,
                error=error,
                delay=delay,
            )

    def recovered(self, sink: str) -> None:
        logger.info("audit sink {sink} takes events again", sink=sink)

    def rejected(self, sink: str, event_id: str, reason: str) -> None:
        self._rejected.labels(sink=sink).inc()
        logger.error(
            "audit sink {sink} refused event {event_id} for good ({reason}); it is kept in the"
            " local store's dead letters",
            sink=sink,
            event_id=event_id,
            reason=reason,
        )

    def replayed(self, count: int) -> None:
        self._replayed.inc(count)
        logger.info("moved {count} spooled audit events to the outbox", count=count)

    def backlog(self, backlog: OutboxBacklog) -> None:
        self._backlog.set(backlog.pending)
        self._oldest.set(backlog.oldest_age or 0.0)

    def trouble(self, what: str, error: BaseException) -> None:
        # The shipper tries again at every poll: a warning a minute is enough.
        now = time.monotonic()
        level = "WARNING"
        if now - self._troubles.get(what, -TROUBLE_EVERY) < TROUBLE_EVERY:
            level = "DEBUG"
        else:
            self._troubles[what] = now
        logger.log(level, "{what}: {error}", what=what, error=f"{type(error).__name__}: {error}")
