from __future__ import annotations

from application.audit import AuditRecorder
from application.common import ExecutionCommand
from application.ports import Clock, ExecutionRepository
from domain.audit import AuditAction


class SetConditionCommand(ExecutionCommand, frozen=True, kw_only=True):
    condition: bool


class SetCondition:
    """Record the workflow condition that picks the execution's next branch."""

    def __init__(
        self, *, executions: ExecutionRepository, clock: Clock, audit: AuditRecorder
    ) -> None:
        self._executions = executions
        self._clock = clock
        self._audit = audit

    async def execute(self, command: SetConditionCommand) -> None:
        async with self._audit.operation(command.context, AuditAction.SET_CONDITION):
            await self._executions.save_condition(
                command.own_execution_id(), command.condition, self._clock.now()
            )
