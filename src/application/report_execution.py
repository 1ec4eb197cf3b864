from __future__ import annotations

import msgspec

from application.ports import AuditTrail, ExecutionCatalog, ToolCallLog, VariableRepository
from domain.audit import OUTCOME_OK, OUTCOME_PENDING, AuditAction
from domain.errors import VariableNotFoundError
from domain.model import ExecutionReport, WrittenVariable


class ReportExecutionCommand(msgspec.Struct, frozen=True, kw_only=True):
    execution_id: str
    user_id: str


class ReportExecution:
    """What an execution did: output, condition, variables, tool calls, audit events.

    - Variables read are the keys the execution asked for, found or not, in first-read order.
    - Variables written are the keys it set or deleted, each with its value as it stands now.
    - Both come from the execution's audit trail, so they are exactly what it did.
    """

    def __init__(
        self,
        *,
        catalog: ExecutionCatalog,
        variables: VariableRepository,
        tool_calls: ToolCallLog,
        audit: AuditTrail,
    ) -> None:
        self._catalog = catalog
        self._variables = variables
        self._tool_calls = tool_calls
        self._audit = audit

    async def execute(self, command: ReportExecutionCommand) -> ExecutionReport:
        outcome = await self._catalog.outcome(command.execution_id)
        events = await self._audit.events_of(command.execution_id)
        read: dict[str, None] = {}
        written: dict[str, None] = {}
        for event in events:
            key, result = event.details.key, event.details.outcome
            if key is None:
                continue
            if event.action == AuditAction.GET_VARIABLE and result in {
                OUTCOME_OK,
                VariableNotFoundError.code,
            }:
                read.setdefault(key)
            elif (
                event.action in {AuditAction.SET_VARIABLE, AuditAction.DELETE_VARIABLE}
                and result == OUTCOME_OK
            ):
                written.setdefault(key)
        current = {}
        for key in written:
            variable = await self._variables.get(command.user_id, key)
            current[key] = (
                WrittenVariable(exists=True, value=variable.value)
                if variable
                else WrittenVariable(exists=False)
            )
        return ExecutionReport(
            outcome=outcome,
            variables_read=list(read),
            variables_written=current,
            tool_calls=await self._tool_calls.calls(command.execution_id),
            # An intent (`audit.failClosed`) announces an operation; its outcome is the event.
            audit_events=sum(event.details.outcome != OUTCOME_PENDING for event in events),
        )
