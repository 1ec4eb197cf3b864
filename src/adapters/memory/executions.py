from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import msgspec

from adapters.clock import SystemClock
from application.ports import Clock, ExecutionCatalog, ExecutionRepository
from domain.errors import ExecutionNotFoundError
from domain.model import ExecutionContext, ExecutionOutcome


class InMemoryExecutionRepository(ExecutionRepository, ExecutionCatalog):
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

    async def create(self, context: ExecutionContext) -> None:
        if context.execution_id in self._contexts:
            raise ValueError(f"execution {context.execution_id!r} already exists")
        self.add(copy.deepcopy(context))

    async def outcome(self, execution_id: str) -> ExecutionOutcome:
        await self.get_context(execution_id)
        return ExecutionOutcome(
            execution_id=execution_id,
            has_output=execution_id in self.outputs,
            output=self.outputs.get(execution_id),
            condition=self.conditions.get(execution_id),
        )

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
        self.outputs[execution_id] = copy.deepcopy(output)

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await self.get_context(execution_id)
        self.conditions[execution_id] = condition
