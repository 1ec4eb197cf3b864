from __future__ import annotations

from typing import Any

from application.audit import AuditRecorder
from application.common import ExecutionCommand
from application.ports import Clock, VariableRepository
from domain.audit import AuditAction
from domain.model import Variable, validate_variable_key


class SetVariableCommand(ExecutionCommand, frozen=True, kw_only=True):
    key: str
    value: Any


class SetVariable:
    """Write one of the user's variables (any JSON value, `null` included).

    - The variable's `updated_at` is the runtime's time of the write.
    """

    def __init__(
        self, *, variables: VariableRepository, clock: Clock, audit: AuditRecorder
    ) -> None:
        self._variables = variables
        self._clock = clock
        self._audit = audit

    async def execute(self, command: SetVariableCommand) -> Variable:
        async with self._audit.operation(
            command.context, AuditAction.SET_VARIABLE, key=command.key
        ) as operation:
            command.own_execution_id()
            key = validate_variable_key(command.key)
            operation.value = command.value
            return await self._variables.put(
                command.context.principal.user_id, key, command.value, self._clock.now()
            )
