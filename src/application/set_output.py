from __future__ import annotations

from typing import Any

from application.audit import AuditRecorder
from application.common import ExecutionCommand
from application.ports import Clock, ExecutionRepository
from domain.audit import AuditAction


class SetOutputCommand(ExecutionCommand, frozen=True, kw_only=True):
    output: Any


class SetOutput:
    """Record the execution's output (any JSON value; a later write replaces it)."""

    def __init__(
        self, *, executions: ExecutionRepository, clock: Clock, audit: AuditRecorder
    ) -> None:
        self._executions = executions
        self._clock = clock
        self._audit = audit

    async def execute(self, command: SetOutputCommand) -> None:
        async with self._audit.operation(command.context, AuditAction.SET_OUTPUT) as operation:
            execution_id = command.own_execution_id()
            operation.value = command.output
            await self._executions.save_output(execution_id, command.output, self._clock.now())
