from __future__ import annotations

from application.ports import Clock, ToolCallLog, ToolGateway
from domain.model import ToolCall, ToolCallRecord, ToolResult


class LoggedToolGateway(ToolGateway):
    """Runs tool actions through another gateway and keeps each call with its answer."""

    def __init__(self, *, inner: ToolGateway, log: ToolCallLog, clock: Clock) -> None:
        self._inner = inner
        self._log = log
        self._clock = clock

    async def execute(self, call: ToolCall) -> ToolResult:
        result = await self._inner.execute(call)
        await self._log.record(ToolCallRecord(call=call, result=result, at=self._clock.now()))
        return result
