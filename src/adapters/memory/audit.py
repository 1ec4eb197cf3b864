from __future__ import annotations

from application.ports import AuditLog, AuditTrail
from domain.audit import AuditEvent
from domain.errors import AuditUnavailableError


class InMemoryAuditLog(AuditLog, AuditTrail):
    """The outbox and its spool in memory, readable back as the trail.

    `outbox_refuses` stands for an outbox that cannot be written (Valkey down): `record`
    then keeps the event in `spooled`, and `record_or_refuse` raises.
    """

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.spooled: list[AuditEvent] = []
        self.outbox_refuses = False

    async def record(self, event: AuditEvent) -> None:
        (self.spooled if self.outbox_refuses else self.events).append(event)

    async def record_or_refuse(self, event: AuditEvent) -> None:
        if self.outbox_refuses:
            raise AuditUnavailableError()
        self.events.append(event)

    async def events_of(self, execution_id: str) -> list[AuditEvent]:
        return [event for event in self.events if event.execution_id == execution_id]

    async def latest(self, *, execution_id: str | None, limit: int) -> list[AuditEvent]:
        chosen = [e for e in self.events if execution_id is None or e.execution_id == execution_id]
        return chosen[-limit:] if limit > 0 else []
