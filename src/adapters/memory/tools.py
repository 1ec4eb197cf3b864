from __future__ import annotations

from application.ports import ToolGateway
from domain.model import ToolCall, ToolResult


class RecordingToolGateway(ToolGateway):
    """Accepts every tool action and sends nothing: the calls are kept for whoever asks."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []

    async def execute(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        return ToolResult(success=True, data=None, metadata={"recorded": True})
