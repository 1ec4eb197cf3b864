"""Readiness's "audit" check: whether events can be persisted in the outbox."""

from __future__ import annotations

import os
import time

from adapters.audit.spool import FileAuditSpool
from application.ports import AuditOutbox, AuditOutboxUnavailableError, HealthProbe
from domain.model import DependencyHealth


class AuditHealthProbe(HealthProbe):
    """Up while the outbox answers; down (readiness then says degraded) while events go to
    the spool instead, or cannot be persisted at all."""

    name = "audit"

    def __init__(self, outbox: AuditOutbox, spool: FileAuditSpool) -> None:
        self._outbox = outbox
        self._spool = spool

    async def check(self) -> DependencyHealth:
        started = time.perf_counter()
        try:
            await self._outbox.backlog()
        except AuditOutboxUnavailableError as error:
            folder = self._spool.path.parent
            if os.access(folder, os.W_OK) or not folder.exists():
                where = f"events are spooled to {self._spool.path} until it can"
            else:
                where = f"and the spool folder {folder} cannot be written either"
            return DependencyHealth(
                status="down",
                latency_ms=_elapsed_ms(started),
                error=f"the audit outbox cannot be used ({error}); {where}",
            )
        return DependencyHealth(status="up", latency_ms=_elapsed_ms(started))


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
