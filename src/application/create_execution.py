from __future__ import annotations

import uuid
from typing import Any

import msgspec

from application.ports import Clock, ExecutionCatalog
from domain.model import ExecutionContext

DEFAULT_EVENT_NAME = "local"
DEFAULT_EVENT_TYPE = "SCRIPT"


class CreateExecutionCommand(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    input: Any = None
    event_name: str | None = None
    event_type: str | None = None


class CreateExecution:
    """Start an execution in the embedded system of record, as the orchestrator would.

    - Fresh execution, event and job ids; the event is named `local` of type `SCRIPT`
      unless the command names it.
    - The input is kept in `metadata.input`, where the Cronium backend keeps it.
    - The start time is the time of creation.
    """

    def __init__(self, *, catalog: ExecutionCatalog, clock: Clock) -> None:
        self._catalog = catalog
        self._clock = clock

    async def execute(self, command: CreateExecutionCommand) -> ExecutionContext:
        event_id = f"event-{uuid.uuid4().hex[:12]}"
        metadata = {} if command.input is None else {"input": command.input}
        context = ExecutionContext(
            execution_id=f"exec-{uuid.uuid4().hex}",
            user_id=command.user_id,
            job_id=f"job-{uuid.uuid4().hex[:12]}",
            event_id=event_id,
            metadata=metadata,
            event={
                "id": event_id,
                "name": command.event_name or DEFAULT_EVENT_NAME,
                "type": command.event_type or DEFAULT_EVENT_TYPE,
            },
            user={"id": command.user_id},
            start_time=self._clock.now(),
        )
        await self._catalog.create(context)
        return context
