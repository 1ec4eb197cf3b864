from __future__ import annotations

from application.audit import AuditRecorder
from application.common import ExecutionCommand
from application.ports import VariableRepository
from domain.audit import AuditAction
from domain.model import VariableSummary


class ListVariablesCommand(ExecutionCommand, frozen=True, kw_only=True):
    pass


class ListVariables:
    """The keys of the user's variables with their write times, sorted by key; no values."""

    def __init__(self, *, variables: VariableRepository, audit: AuditRecorder) -> None:
        self._variables = variables
        self._audit = audit

    async def execute(self, command: ListVariablesCommand) -> list[VariableSummary]:
        async with self._audit.operation(command.context, AuditAction.LIST_VARIABLES):
            command.own_execution_id()
            summaries = await self._variables.list(command.context.principal.user_id)
        return sorted(summaries, key=lambda summary: summary.key)
