from __future__ import annotations

from application.audit import AuditRecorder
from application.common import ExecutionCommand
from application.ports import ExecutionRepository
from domain.audit import AuditAction
from domain.model import ExecutionContext


class GetContextCommand(ExecutionCommand, frozen=True, kw_only=True):
    pass


class GetContext:
    """The execution's context: ids, event, user, metadata and start time.

    - Only the token's own execution.
    """

    def __init__(self, *, executions: ExecutionRepository, audit: AuditRecorder) -> None:
        self._executions = executions
        self._audit = audit

    async def execute(self, command: GetContextCommand) -> ExecutionContext:
        async with self._audit.operation(command.context, AuditAction.GET_CONTEXT):
            return await self._executions.get_context(command.own_execution_id())
