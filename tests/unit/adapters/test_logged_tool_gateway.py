"""LoggedToolGateway: every tool action is passed on, and kept with its answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.memory.tool_calls import InMemoryToolCallLog
from adapters.tools.logged import LoggedToolGateway
from application.ports import Clock, ToolGateway
from domain.errors import InvalidToolParamsError, ToolNotFoundError
from domain.model import ToolCall, ToolCallRecord, ToolResult

T0 = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)


class SteppingClock(Clock):
    """A second later at every reading."""

    def __init__(self) -> None:
        self.readings = 0

    def now(self) -> datetime:
        moment = T0 + timedelta(seconds=self.readings)
        self.readings += 1
        return moment


class AnsweringGateway(ToolGateway):
    """Answers each call with its action in the data; keeps the calls it was given."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []

    async def execute(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        if call.action == "refuse":
            return ToolResult(success=False, error="no", code="TOOL_REFUSED", metadata={"n": 1})
        return ToolResult(success=True, data={"did": call.action})


class RaisingGateway(ToolGateway):
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls: list[ToolCall] = []

    async def execute(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        raise self.error


def call(action: str, *, execution_id: str = "exec-1", **params: object) -> ToolCall:
    return ToolCall(
        execution_id=execution_id,
        user_id="local",
        tool="slack",
        action=action,
        params=dict(params),
        request_id=f"req-{action}",
    )


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def log() -> InMemoryToolCallLog:
    return InMemoryToolCallLog()


async def test_a_call_is_passed_on_and_its_answer_returned(clock, log):
    inner = AnsweringGateway()
    gateway = LoggedToolGateway(inner=inner, log=log, clock=clock)

    result = await gateway.execute(call("send", text="hi"))

    assert inner.calls == [call("send", text="hi")]
    assert result == ToolResult(success=True, data={"did": "send"})


async def test_every_call_is_logged_with_its_answer_and_the_clocks_time(clock, log):
    gateway = LoggedToolGateway(inner=AnsweringGateway(), log=log, clock=clock)

    await gateway.execute(call("send", text="one"))
    await gateway.execute(call("refuse"))
    await gateway.execute(call("send", execution_id="exec-2", text="two"))

    assert log.records == [
        ToolCallRecord(
            call=call("send", text="one"),
            result=ToolResult(success=True, data={"did": "send"}),
            at=T0,
        ),
        ToolCallRecord(
            call=call("refuse"),
            result=ToolResult(success=False, error="no", code="TOOL_REFUSED", metadata={"n": 1}),
            at=T0 + timedelta(seconds=1),
        ),
        ToolCallRecord(
            call=call("send", execution_id="exec-2", text="two"),
            result=ToolResult(success=True, data={"did": "send"}),
            at=T0 + timedelta(seconds=2),
        ),
    ]
    assert [record.call.action for record in await log.calls("exec-1")] == ["send", "refuse"]


@pytest.mark.parametrize(
    "error",
    [
        ToolNotFoundError("slack", "send"),
        InvalidToolParamsError("text is required"),
        RuntimeError("the tool's client is broken"),
    ],
    ids=["not-found", "invalid-params", "bug"],
)
async def test_a_gateway_that_raises_logs_nothing_and_the_error_propagates(clock, log, error):
    inner = RaisingGateway(error)
    gateway = LoggedToolGateway(inner=inner, log=log, clock=clock)

    with pytest.raises(type(error)) as raised:
        await gateway.execute(call("send"))

    assert raised.value is error
    assert inner.calls == [call("send")]
    assert log.records == []
    assert await log.calls("exec-1") == []
