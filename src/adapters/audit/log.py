"""The `AuditLog`: every event persisted before the reply, in the outbox or the spool."""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from adapters.audit.metrics import AuditMetrics
from application.ports import AuditLog, AuditOutbox, AuditOutboxUnavailableError, AuditSpool
from domain.audit import AuditEvent, encode_event
from domain.errors import AuditUnavailableError


class DurableAuditLog(AuditLog):
    """Writes the outbox (Valkey's stream, else the local store) and tells the shipper.

    - `record`: when the outbox cannot be written, the spool file; the shipper moves
      spooled events to the outbox once it can. When the spool cannot be written either
      (a full disk as well), the event is written whole to the error log, its last durable
      place, and counted: the operation has been performed, and failing its answer would
      make the helpers repeat it.
    - `record_or_refuse`: the outbox or `AuditUnavailableError`, never the spool (an intent
      under `audit.failClosed`: the operation is then not performed).
    """

    def __init__(
        self,
        *,
        outbox: AuditOutbox,
        spool: AuditSpool,
        metrics: AuditMetrics,
        on_recorded: Callable[[], None] = lambda: None,
    ) -> None:
        self._outbox = outbox
        self._spool = spool
        self._metrics = metrics
        self._on_recorded = on_recorded

    async def record(self, event: AuditEvent) -> None:
        try:
            await self._outbox.append(event)
        except AuditOutboxUnavailableError as outage:
            await self._spooled(event, outage)
            return
        self._recorded()

    async def record_or_refuse(self, event: AuditEvent) -> None:
        try:
            await self._outbox.append(event)
        except AuditOutboxUnavailableError as outage:
            raise AuditUnavailableError() from outage
        self._recorded()

    def _recorded(self) -> None:
        self._metrics.recorded("outbox")
        self._on_recorded()

    async def _spooled(self, event: AuditEvent, outage: AuditOutboxUnavailableError) -> None:
        try:
            await self._spool.append(event)
        except OSError as error:
            logger.error(
                "audit event {event_id} could not be persisted (outbox: {outage}; spool: {error});"
                " the event: {event}",
                event_id=event.id,
                outage=outage,
                error=error,
                event=encode_event(event).decode(),
            )
            self._metrics.recorded("log")
            return
        self._metrics.recorded("spool")
