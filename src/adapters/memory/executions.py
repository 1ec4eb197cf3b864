from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from adapters.clock import SystemClock
from application.ports import Clock, ExecutionRepository
from domain.errors import ExecutionNotFoundError
from domain.model import ExecutionContext


class InMemoryExecutionRepository(ExecutionRepository):
    """Executions held in this process; what they were told (output, condition) is kept too."""

    def __init__(
        self, executions: list[ExecutionContext] | None = None, clock: Clock | None = None
    ) -> None:
        self._clock = clock or SystemClock()
        self._contexts = {context.execution_id: context for context in executions or []}
        self.outputs: dict[str, Any] = {}
        self.conditions: dict[str, bool] = {}

    def add(self, context: ExecutionContext) -> None:
        self._contexts[context.execution_id] = context

    async def get_context(self, execution_id: str) -> ExecutionContext:
        try:
            context = self._contexts[execution_id]
        except KeyError:
            raise ExecutionNotFoundError(execution_id) from None
        if context.start_time is None:
            context = msgspec.structs.replace(context, start_time=self._clock.now())
            self._contexts[execution_id] = context
        return context

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        await self.get_context(execution_id)
        self.outputs[execution_id] = output

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await self.get_context(execution_id)
        self.conditions[execution_id] = condition
