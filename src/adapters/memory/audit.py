from __future__ import annotations

from application.ports import AuditLog, AuditTrail
from domain.audit import AuditEvent


class InMemoryAuditLog(AuditLog, AuditTrail):
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    async def events_of(self, execution_id: str) -> list[AuditEvent]:
        return [event for event in self.events if event.execution_id == execution_id]
