from __future__ import annotations

from application.audit import AuditRecorder
from application.common import ExecutionCommand
from application.ports import VariableRepository
from domain.audit import AuditAction
from domain.errors import VariableNotFoundError
from domain.model import Variable, validate_variable_key


class GetVariableCommand(ExecutionCommand, frozen=True, kw_only=True):
    key: str


class GetVariable:
    """Read one of the user's variables.

    - Variables belong to the token's user, not to the execution: every run of any of the
      user's events reads the same value.
    - An unknown key is `VariableNotFoundError` (the helpers turn it into None).
    """

    def __init__(self, *, variables: VariableRepository, audit: AuditRecorder) -> None:
        self._variables = variables
        self._audit = audit

    async def execute(self, command: GetVariableCommand) -> Variable:
        async with self._audit.operation(
            command.context, AuditAction.GET_VARIABLE, key=command.key
        ) as operation:
            command.own_execution_id()
            key = validate_variable_key(command.key)
            variable = await self._variables.get(command.context.principal.user_id, key)
            if variable is None:
                raise VariableNotFoundError(key)
            operation.value = variable.value
        return variable
