"""RunToolAction: a script asks a tool (Slack, email, a webhook, ...) to act on its behalf."""

from __future__ import annotations

import pytest

from application.run_tool_action import RunToolAction, RunToolActionCommand
from domain.errors import InvalidInputError, InvalidToolParamsError, ToolNotFoundError
from domain.model import ToolCall, ToolResult

SLACK_PARAMS = {"text": "deploy finished ✅", "channel": "#ops"}


async def test_running_a_tool_action_returns_the_tools_result(tools, audit, alice):
    tools.result = ToolResult(success=True, data={"ts": "1700000000.1"}, metadata={"ms": 12})
    run_tool_action = RunToolAction(tools=tools, audit=audit)

    result = await run_tool_action.execute(
        RunToolActionCommand(
            context=alice, tool="slack", action="send_message", params=SLACK_PARAMS
        )
    )

    assert result == ToolResult(success=True, data={"ts": "1700000000.1"}, metadata={"ms": 12})


async def test_the_tool_is_called_once_on_behalf_of_the_tokens_execution_and_user(
    tools, audit, alice
):
    run_tool_action = RunToolAction(tools=tools, audit=audit)

    await run_tool_action.execute(
        RunToolActionCommand(
            context=alice, tool="slack", action="send_message", params=SLACK_PARAMS
        )
    )

    assert tools.calls == [
        ToolCall(
            execution_id="exec-alice-1",
            user_id="alice",
            tool="slack",
            action="send_message",
            params=SLACK_PARAMS,
            request_id="req-a1",
        )
    ]


async def test_a_tool_that_answered_failure_is_returned_not_raised(tools, audit, alice):
    failure = ToolResult(success=False, data=None, error="channel_not_found", code="TOOL_FAILED")
    tools.result = failure
    run_tool_action = RunToolAction(tools=tools, audit=audit)

    result = await run_tool_action.execute(
        RunToolActionCommand(
            context=alice, tool="slack", action="send_message", params=SLACK_PARAMS
        )
    )

    assert result == failure
    assert len(tools.calls) == 1


@pytest.mark.parametrize("tool", ["", "   "], ids=["empty", "blank"])
async def test_a_tool_action_without_a_tool_is_refused_and_nothing_is_sent(
    tools, audit, alice, tool
):
    run_tool_action = RunToolAction(tools=tools, audit=audit)

    with pytest.raises(InvalidInputError, match=r"^tool must be a non-empty string$"):
        await run_tool_action.execute(
            RunToolActionCommand(context=alice, tool=tool, action="send_message", params={})
        )

    assert tools.calls == []


@pytest.mark.parametrize("action", ["", " \t"], ids=["empty", "blank"])
async def test_a_tool_action_without_an_action_is_refused_and_nothing_is_sent(
    tools, audit, alice, action
):
    run_tool_action = RunToolAction(tools=tools, audit=audit)

    with pytest.raises(InvalidInputError, match=r"^action must be a non-empty string$"):
        await run_tool_action.execute(
            RunToolActionCommand(context=alice, tool="slack", action=action, params={})
        )

    assert tools.calls == []


@pytest.mark.parametrize(
    "error",
    [ToolNotFoundError("fax", "send"), InvalidToolParamsError("text is required")],
    ids=["unknown tool", "missing parameter"],
)
async def test_an_error_from_the_tool_gateway_reaches_the_caller(tools, audit, alice, error):
    tools.error = error
    run_tool_action = RunToolAction(tools=tools, audit=audit)

    with pytest.raises(type(error)) as raised:
        await run_tool_action.execute(
            RunToolActionCommand(context=alice, tool="fax", action="send", params={})
        )

    assert raised.value is error
