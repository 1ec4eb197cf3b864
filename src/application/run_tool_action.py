from __future__ import annotations

from typing import Any

import msgspec

from application.audit import AuditRecorder
from application.ports import ToolGateway
from domain.audit import OUTCOME_OK, AuditAction
from domain.errors import InvalidInputError
from domain.model import RequestContext, ToolCall, ToolResult


class RunToolActionCommand(msgspec.Struct, frozen=True, kw_only=True):
    context: RequestContext
    tool: str
    action: str
    params: dict[str, Any]


class RunToolAction:
    """Run a tool action (Slack, Discord, email, webhook, ...) for the token's execution.

    - `tool` and `action` name what to run; both must be non-empty.
    - A tool that answered `success: false` is an answer: the result is returned, never
      raised, so the caller does not repeat a message the tool may have sent.
    """

    def __init__(self, *, tools: ToolGateway, audit: AuditRecorder) -> None:
        self._tools = tools
        self._audit = audit

    async def execute(self, command: RunToolActionCommand) -> ToolResult:
        async with self._audit.operation(
            command.context,
            AuditAction.EXECUTE_TOOL_ACTION,
            tool=command.tool,
            tool_action=command.action,
        ) as operation:
            for field, value in (("tool", command.tool), ("action", command.action)):
                if not value.strip():
                    raise InvalidInputError(f"{field} must be a non-empty string")
            operation.value = command.params
            principal = command.context.principal
            result = await self._tools.execute(
                ToolCall(
                    execution_id=principal.execution_id,
                    user_id=principal.user_id,
                    tool=command.tool,
                    action=command.action,
                    params=command.params,
                    request_id=command.context.request_id,
                )
            )
            operation.outcome = OUTCOME_OK if result.success else result.code or "TOOL_FAILED"
        return result
