from __future__ import annotations

from application.audit import AuditRecorder
from application.common import ExecutionCommand
from application.ports import VariableRepository
from domain.audit import AuditAction
from domain.errors import VariableNotFoundError
from domain.model import validate_variable_key


class DeleteVariableCommand(ExecutionCommand, frozen=True, kw_only=True):
    key: str


class DeleteVariable:
    """Remove one of the user's variables; an unknown key is `VariableNotFoundError`."""

    def __init__(self, *, variables: VariableRepository, audit: AuditRecorder) -> None:
        self._variables = variables
        self._audit = audit

    async def execute(self, command: DeleteVariableCommand) -> None:
        async with self._audit.operation(
            command.context, AuditAction.DELETE_VARIABLE, key=command.key
        ):
            command.own_execution_id()
            key = validate_variable_key(command.key)
            if not await self._variables.delete(command.context.principal.user_id, key):
                raise VariableNotFoundError(key)
