"""The `ToolCallLog` contract, held by both adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from adapters.memory.tool_calls import InMemoryToolCallLog
from adapters.sqlite.tool_calls import SqliteToolCallLog
from application.ports import ToolCallLog
from domain.model import ToolCall, ToolCallRecord, ToolResult

if TYPE_CHECKING:
    from conftest import OpenStore

AT = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)


def record(execution_id: str, n: int, result: ToolResult | None = None) -> ToolCallRecord:
    return ToolCallRecord(
        call=ToolCall(
            execution_id=execution_id,
            user_id="user-1",
            tool="slack",
            action="send_message",
            params={"text": f"message {n} — ✓ 日本", "blocks": [{"type": "x", "n": None}]},
            request_id=f"req-{n}",
        ),
        result=result or ToolResult(success=True, data={"ts": n}),
        at=AT + timedelta(microseconds=n),
    )


@pytest.fixture(params=["memory", "sqlite"])
async def tool_calls(request: pytest.FixtureRequest, open_store: OpenStore) -> ToolCallLog:
    if request.param == "memory":
        return InMemoryToolCallLog()
    return SqliteToolCallLog(await open_store())


async def test_an_execution_that_ran_no_tool_has_no_calls(tool_calls: ToolCallLog) -> None:
    assert await tool_calls.calls("exec-1") == []


async def test_an_executions_tool_calls_come_back_oldest_first_and_only_its_own(
    tool_calls: ToolCallLog,
) -> None:
    mine = [record("exec-1", n) for n in range(5)]
    for n, item in enumerate(mine):
        await tool_calls.record(item)
        await tool_calls.record(record("exec-2", 100 + n))

    assert await tool_calls.calls("exec-1") == mine
    assert [item.call.request_id for item in await tool_calls.calls("exec-2")] == [
        f"req-{100 + n}" for n in range(5)
    ]


@pytest.mark.parametrize(
    "result",
    [
        ToolResult(success=True),
        ToolResult(success=True, data=[None, {"ünï": "✓"}], metadata={"dryRun": True}),
        ToolResult(success=False, error="the tool said no", code="TOOL_FAILED", data=None),
        ToolResult(success=False, code="TOOL_OUTCOME_UNKNOWN", metadata={}),
    ],
    ids=["bare success", "data and metadata", "failed", "outcome unknown"],
)
async def test_a_tool_call_and_its_answer_are_read_back_unchanged(
    tool_calls: ToolCallLog, result: ToolResult
) -> None:
    item = record("exec-1", 1, result)

    await tool_calls.record(item)

    assert await tool_calls.calls("exec-1") == [item]
