"""The webhook, Slack and Discord tools against a local HTTP server standing in for them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tool_fakes import (
    DISCORD_PATH,
    SECRET,
    SLACK_PATH,
    WEBHOOK_PATH,
    Answer,
    FakeHttpTool,
    call,
    free_port,
    tools_config,
)

from adapters.tools.builtin import BuiltinToolsConfig
from domain.errors import BackendUnavailableError, InvalidToolParamsError, ToolNotFoundError
from domain.model import ToolResult


def leaks(text: str | None, tool: FakeHttpTool) -> bool:
    return text is not None and (SECRET in text or tool.base_url.split("//")[1] in text)


async def test_slack_gets_the_incoming_webhook_json_and_its_ok_is_the_data(
    http_tool: FakeHttpTool, open_gateway: Any
) -> None:
    gateway = await open_gateway(tools_config(http_tool))
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]

    result = await gateway.execute(
        call(
            "slack",
            "send_message",
            text="hello",
            channel="#ops",
            username="bot",
            icon_emoji=":robot:",
            icon_url="https://example.test/i.png",
            blocks=blocks,
            unrelated="ignored",
        )
    )

    assert result.success is True
    assert result.data == "ok"
    [request] = http_tool.at(SLACK_PATH)
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "text": "hello",
        "channel": "#ops",
        "username": "bot",
        "icon_emoji": ":robot:",
        "icon_url": "https://example.test/i.png",
        "blocks": blocks,
    }


async def test_slack_sends_only_the_text_when_nothing_else_is_given(
    http_tool: FakeHttpTool, open_gateway: Any
) -> None:
    gateway = await open_gateway(tools_config(http_tool))

    await gateway.execute(call("slack", "send_message", text="plain", channel=None))

    assert json.loads(http_tool.at(SLACK_PATH)[0].body) == {"text": "plain"}


async def test_discord_gets_its_webhook_json_without_the_channel_and_204_is_success(
    http_tool: FakeHttpTool, open_gateway: Any
) -> None:
    http_tool.answers[DISCORD_PATH] = Answer(status=204)
    gateway = await open_gateway(tools_config(http_tool))
    embeds = [{"title": "t", "description": "d"}]

    result = await gateway.execute(
        call("discord", "send_message", content="hi", username="bot", embeds=embeds, channelId="9")
    )

    assert result == ToolResult(success=True, data=None, metadata={"status": 204})
    [request] = http_tool.at(DISCORD_PATH)
    assert json.loads(request.body) == {"content": "hi", "username": "bot", "embeds": embeds}


@pytest.mark.parametrize("action", ["post", "send"])
async def test_the_webhook_gets_the_body_as_json_with_the_scripts_headers(
    http_tool: FakeHttpTool, open_gateway: Any, action: str
) -> None:
    http_tool.answers[WEBHOOK_PATH] = Answer(
        status=201, body='{"id": 7}', content_type="application/json"
    )
    gateway = await open_gateway(tools_config(http_tool))
    body = {"event": "done", "items": [1, 2.5, None, "x"], "nested": {"ok": True}}

    result = await gateway.execute(call("webhook", action, body=body, headers={"X-Token": "abc"}))

    assert result.success is True
    assert result.data == {"id": 7}
    [request] = http_tool.at(WEBHOOK_PATH)
    assert json.loads(request.body) == body
    assert request.headers["X-Token"] == "abc"
    assert request.headers["Content-Type"] == "application/json"


async def test_a_webhook_body_may_be_any_json_value_and_a_text_reply_is_the_data(
    http_tool: FakeHttpTool, open_gateway: Any
) -> None:
    http_tool.answers[WEBHOOK_PATH] = Answer(body="accepted")
    gateway = await open_gateway(tools_config(http_tool))

    for body in ("text", 3, [1, 2], None):
        result = await gateway.execute(call("webhook", "post", body=body))
        assert result.data == "accepted"

    assert [json.loads(r.body) for r in http_tool.at(WEBHOOK_PATH)] == ["text", 3, [1, 2], None]


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("slack.send_message", {}, "`text`"),
        ("slack.send_message", {"text": 5}, "`text`"),
        ("slack.send_message", {"text": ""}, "`text`"),
        ("slack.send_message", {"text": "x", "channel": 1}, "`channel`"),
        ("slack.send_message", {"text": "x", "username": []}, "`username`"),
        ("slack.send_message", {"text": "x", "icon_emoji": 1}, "`icon_emoji`"),
        ("slack.send_message", {"text": "x", "icon_url": {}}, "`icon_url`"),
        ("slack.send_message", {"text": "x", "blocks": "b"}, "`blocks`"),
        ("slack.send_message", {"text": "x", "blocks": ["b"]}, "`blocks`"),
        ("discord.send_message", {}, "`content`"),
        ("discord.send_message", {"content": True}, "`content`"),
        ("discord.send_message", {"content": "x", "username": 2}, "`username`"),
        ("discord.send_message", {"content": "x", "embeds": {}}, "`embeds`"),
        ("discord.send_message", {"content": "x", "channelId": []}, "`channelId`"),
        ("webhook.post", {}, "`body`"),
        ("webhook.post", {"body": 1, "headers": "h"}, "`headers`"),
        ("webhook.post", {"body": 1, "headers": {"X-A": 1}}, "`headers.X-A`"),
        ("webhook.send", {"body": 1, "headers": {"X-A": "a\r\nX-B: b"}}, "`headers.X-A`"),
        ("webhook.post", {"body": 1, "headers": {"X A": "a"}}, "`headers`"),
        ("webhook.post", {"body": 1, "headers": {"Content-Type": "text/x"}}, "`headers`"),
        ("webhook.post", {"body": 1, "headers": {"host": "evil"}}, "`headers`"),
        ("webhook.post", {"body": 1, "headers": {"Content-Length": "1"}}, "`headers`"),
    ],
)
async def test_a_missing_or_wrongly_typed_param_is_refused_naming_the_field(
    http_tool: FakeHttpTool,
    open_gateway: Any,
    name: str,
    params: dict[str, Any],
    field: str,
) -> None:
    gateway = await open_gateway(tools_config(http_tool))
    tool, action = name.split(".")

    with pytest.raises(InvalidToolParamsError) as raised:
        await gateway.execute(call(tool, action, **params))

    assert raised.value.message.startswith(f"{name} needs `")
    assert field in raised.value.message
    assert "\r" not in raised.value.message and "\n" not in raised.value.message
    assert http_tool.received == []


async def test_the_message_says_what_the_field_should_be(
    http_tool: FakeHttpTool, open_gateway: Any
) -> None:
    gateway = await open_gateway(tools_config(http_tool))

    with pytest.raises(InvalidToolParamsError) as raised:
        await gateway.execute(call("slack", "send_message"))

    assert raised.value.message == "slack.send_message needs `text` (a non-empty string)"


@pytest.mark.parametrize("tool", ["slack", "discord", "webhook", "email"])
async def test_an_unconfigured_tool_is_not_found(open_gateway: Any, tool: str) -> None:
    gateway = await open_gateway(BuiltinToolsConfig(timeout=1.0))

    with pytest.raises(ToolNotFoundError):
        await gateway.execute(call(tool, "send_message", text="x", content="x", body=1))


@pytest.mark.parametrize(
    ("tool", "action"), [("slack", "post"), ("webhook", "send_message"), ("sms", "send")]
)
async def test_an_unknown_action_or_tool_is_not_found(
    http_tool: FakeHttpTool, open_gateway: Any, tool: str, action: str
) -> None:
    gateway = await open_gateway(tools_config(http_tool))

    with pytest.raises(ToolNotFoundError):
        await gateway.execute(call(tool, action, text="x", body=1))

    assert http_tool.received == []


async def test_dry_run_validates_answers_dry_and_sends_nothing(
    http_tool: FakeHttpTool, open_gateway: Any
) -> None:
    gateway = await open_gateway(tools_config(http_tool, dry_run=True))
    unconfigured = await open_gateway(BuiltinToolsConfig(timeout=1.0, dry_run=True))
    dry = ToolResult(success=True, data=None, metadata={"dryRun": True})

    assert await gateway.execute(call("slack", "send_message", text="hi")) == dry
    assert await gateway.execute(call("webhook", "post", body={})) == dry
    assert await unconfigured.execute(call("discord", "send_message", content="hi")) == dry
    assert await unconfigured.execute(call("sms", "send", anything=1)) == dry
    assert await unconfigured.execute(call("slack", "unknown_action")) == dry
    with pytest.raises(InvalidToolParamsError, match="`text`"):
        await unconfigured.execute(call("slack", "send_message"))
    with pytest.raises(InvalidToolParamsError, match="`body`"):
        await gateway.execute(call("webhook", "post"))
    assert http_tool.received == []


async def test_the_log_tool_takes_any_action_and_sends_nothing(
    http_tool: FakeHttpTool, open_gateway: Any
) -> None:
    for dry_run in (False, True):
        gateway = await open_gateway(tools_config(http_tool, dry_run=dry_run))
        result = await gateway.execute(call("log", "whatever", message="hi", level=3))
        assert result == ToolResult(success=True, data=None, metadata={"logged": True})
    assert http_tool.received == []


async def test_nothing_listening_is_unavailable_saying_nothing_was_sent(
    open_gateway: Any,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/services/{SECRET}"
    gateway = await open_gateway(BuiltinToolsConfig(slack_webhook_url=url, timeout=1.0))

    with pytest.raises(BackendUnavailableError) as raised:
        await gateway.execute(call("slack", "send_message", text="hi"))

    assert "nothing was sent" in raised.value.message
    assert "connection refused" in raised.value.message
    assert SECRET not in raised.value.message and "127.0.0.1" not in raised.value.message


@pytest.mark.parametrize("status", [400, 403, 404, 410])
async def test_a_4xx_is_tool_failed_with_the_reply_masked(
    http_tool: FakeHttpTool, open_gateway: Any, status: int
) -> None:
    http_tool.answers[SLACK_PATH] = Answer(
        status=status, body=f"invalid_payload at {http_tool.url(SLACK_PATH)}"
    )
    gateway = await open_gateway(tools_config(http_tool))

    result = await gateway.execute(call("slack", "send_message", text="hi"))

    assert result.success is False
    assert result.code == "TOOL_FAILED"
    assert result.error is not None
    assert result.error.startswith(f"slack answered HTTP {status}: invalid_payload at ")
    assert SECRET not in result.error
    assert len(http_tool.at(SLACK_PATH)) == 1


@pytest.mark.parametrize(
    "answer",
    [
        Answer(status=500, body="rollup_error"),
        Answer(status=503),
        Answer(behaviour="hang"),
        Answer(behaviour="close"),
    ],
    ids=["500", "503", "hang", "close"],
)
async def test_after_sending_a_5xx_a_hang_or_a_drop_is_an_unknown_outcome_sent_once(
    http_tool: FakeHttpTool, open_gateway: Any, answer: Answer
) -> None:
    http_tool.answers[WEBHOOK_PATH] = answer
    gateway = await open_gateway(tools_config(http_tool))

    result = await gateway.execute(call("webhook", "post", body={"n": 1}))

    assert result.success is False
    assert result.code == "TOOL_OUTCOME_UNKNOWN"
    assert "may have been delivered" in (result.error or "")
    assert not leaks(result.error, http_tool)
    assert len(http_tool.at(WEBHOOK_PATH)) == 1


async def test_no_result_or_error_names_a_url(http_tool: FakeHttpTool, open_gateway: Any) -> None:
    gateway = await open_gateway(tools_config(http_tool))
    http_tool.answers[DISCORD_PATH] = Answer(status=401, body=http_tool.url(DISCORD_PATH))
    texts: list[str | None] = []
    for tool, params in (
        ("slack", {"text": "x"}),
        ("discord", {"content": "x"}),
        ("webhook", {"body": 1}),
    ):
        result = await gateway.execute(
            call(tool, "send_message" if tool != "webhook" else "post", **params)
        )
        texts += [result.error, repr(result)]
    for params in ({}, {"text": 1}):
        with pytest.raises(InvalidToolParamsError) as raised:
            await gateway.execute(call("slack", "send_message", **params))
        texts.append(str(raised.value))
    texts.append(repr(tools_config(http_tool)))

    assert not [text for text in texts if leaks(text, http_tool)]


async def test_the_gateway_refuses_to_run_unopened(http_tool: FakeHttpTool) -> None:
    from adapters.tools.builtin import BuiltinToolGateway

    gateway = BuiltinToolGateway(tools_config(http_tool))
    with pytest.raises(RuntimeError, match="open"):
        await gateway.execute(call("slack", "send_message", text="x"))
    async with gateway:
        assert (await gateway.execute(call("slack", "send_message", text="x"))).success
