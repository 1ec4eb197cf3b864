from __future__ import annotations

from application.ports import AuditLog
from domain.audit import AuditEvent


class InMemoryAuditLog(AuditLog):
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> None:
        self.events.append(event)
