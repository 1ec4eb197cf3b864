from __future__ import annotations

from typing import Any

from application.audit import AuditRecorder
from application.common import ExecutionCommand
from application.ports import ExecutionRepository
from domain.audit import AuditAction


class GetInputCommand(ExecutionCommand, frozen=True, kw_only=True):
    pass


class GetInput:
    """The input the execution was started with.

    - Only the token's own execution.
    - No input is `None`, not an error.
    """

    def __init__(self, *, executions: ExecutionRepository, audit: AuditRecorder) -> None:
        self._executions = executions
        self._audit = audit

    async def execute(self, command: GetInputCommand) -> Any:
        async with self._audit.operation(command.context, AuditAction.GET_INPUT) as operation:
            context = await self._executions.get_context(command.own_execution_id())
            operation.value = context.input
        return context.input
