from __future__ import annotations

from application.ports import ToolCallLog
from domain.model import ToolCallRecord


class InMemoryToolCallLog(ToolCallLog):
    def __init__(self) -> None:
        self.records: list[ToolCallRecord] = []

    async def record(self, record: ToolCallRecord) -> None:
        self.records.append(record)

    async def calls(self, execution_id: str) -> list[ToolCallRecord]:
        return [record for record in self.records if record.call.execution_id == execution_id]
