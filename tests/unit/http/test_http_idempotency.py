"""`Idempotency-Key` on tool actions and output, through the whole app (SPEC section 4),
with the container's `idempotency_store` overridden by an in-memory one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from http_harness import (
    EXEC,
    EXEC_2,
    Api,
    StubToolGateway,
    assert_error,
    start_api,
)

from adapters.memory.idempotency import InMemoryIdempotencyStore
from application.ports import ToolGateway
from domain.errors import BackendUnavailableError, InvalidToolParamsError
from domain.model import ToolCall, ToolResult

TTL = 3600.0
TOOL_BODY = {"tool": "slack", "action": "send", "params": {"text": "hi", "channel": "#ops"}}


class Idem:
    def __init__(self, stack: ExitStack, home: Path) -> None:
        self.stack = stack
        self.home = home
        self.store = InMemoryIdempotencyStore()

    def start(self, **options: Any) -> Api:
        options.setdefault("overrides", {})["idempotency_store"] = self.store
        return start_api(self.stack, self.home, **options)


@pytest.fixture
def idem(tmp_path: Path) -> Iterator[Idem]:
    with ExitStack() as stack:
        yield Idem(stack, tmp_path)


def _tool(api: Api, key: str | None, body: Any = None, execution_id: str = EXEC) -> Any:
    headers = api.auth(execution_id)
    if key is not None:
        headers["Idempotency-Key"] = key
    return api.client.post(
        "/tool-actions/execute", json=TOOL_BODY if body is None else body, headers=headers
    )


def test_a_repeated_tool_call_is_replayed_and_the_tool_runs_once(idem: Idem) -> None:
    api = idem.start()
    first = _tool(api, "k-1")
    assert first.status_code == 200, first.text
    assert "idempotency-replayed" not in first.headers
    # Equal JSON in another order and spacing is the same request.
    reordered = {"params": {"channel": "#ops", "text": "hi"}, "action": "send", "tool": "slack"}
    second = _tool(api, "k-1", reordered)
    assert second.status_code == 200
    assert second.headers["idempotency-replayed"] == "true"
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    # The current request's own fields, not the stored ones.
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert "ratelimit" in second.headers
    assert len(api.tools.calls) == 1


def test_a_different_body_under_the_same_key_is_a_conflict(idem: Idem) -> None:
    api = idem.start()
    assert _tool(api, "k-1").status_code == 200
    other = {**TOOL_BODY, "params": {"text": "bye", "channel": "#ops"}}
    assert_error(_tool(api, "k-1", other), 409, "IDEMPOTENCY_CONFLICT", "Conflict")
    assert len(api.tools.calls) == 1


class WaitingToolGateway(ToolGateway):
    """Holds every call until `release` is set; `entered` says a call is being held."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = asyncio.Event()
        self.calls: list[ToolCall] = []

    async def execute(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        self.entered.set()
        await self.release.wait()
        return ToolResult(success=True, data="sent")


def test_a_repeat_while_the_first_still_runs_is_a_conflict(idem: Idem) -> None:
    tools = WaitingToolGateway()
    api = idem.start(tools=tools)
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(_tool(api, "k-1")))
    first.start()
    try:
        assert tools.entered.wait(10)
        assert_error(_tool(api, "k-1"), 409, "IDEMPOTENCY_CONFLICT", "Conflict")
    finally:
        api.client.blocking_portal.call(tools.release.set)
        first.join(10)
    assert answers[0].status_code == 200
    assert answers[0].json()["data"] == "sent"
    replay = _tool(api, "k-1")
    assert replay.headers["idempotency-replayed"] == "true"
    assert replay.json()["data"] == "sent"
    assert len(tools.calls) == 1


class FailingOnceToolGateway(ToolGateway):
    """Fails the first call with `error`, then answers."""

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error
        self.calls: list[ToolCall] = []

    async def execute(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return ToolResult(success=True, data="second time")


def test_a_4xx_answer_is_kept_and_replayed(idem: Idem) -> None:
    tools = FailingOnceToolGateway(InvalidToolParamsError("params.channel is missing"))
    api = idem.start(tools=tools)
    first = assert_error(_tool(api, "k-1"), 400, "INVALID_TOOL_PARAMS", "Bad Request")
    second = _tool(api, "k-1")
    assert second.headers["idempotency-replayed"] == "true"
    assert assert_error(second, 400, "INVALID_TOOL_PARAMS", "Bad Request") == first
    assert len(tools.calls) == 1


@pytest.mark.parametrize(
    ("error", "status"),
    [(BackendUnavailableError(), 503), (RuntimeError("a bug in the tool"), 500)],
)
def test_a_5xx_answer_is_not_kept_and_the_repeat_runs_again(
    idem: Idem, error: Exception, status: int
) -> None:
    tools = FailingOnceToolGateway(error)
    api = idem.start(tools=tools)
    assert _tool(api, "k-1").status_code == status
    second = _tool(api, "k-1")
    assert second.status_code == 200
    assert "idempotency-replayed" not in second.headers
    assert second.json()["data"] == "second time"
    third = _tool(api, "k-1")
    assert third.headers["idempotency-replayed"] == "true"
    assert len(tools.calls) == 2


def test_keys_are_scoped_per_execution_and_per_route(idem: Idem) -> None:
    api = idem.start(tools=StubToolGateway(ToolResult(success=True, data=1)))
    assert _tool(api, "shared").status_code == 200
    other_execution = _tool(api, "shared", execution_id=EXEC_2)
    assert other_execution.status_code == 200
    assert "idempotency-replayed" not in other_execution.headers
    # The same key on the output route is another record, even with another body.
    output = api.client.post(
        f"/executions/{EXEC}/output",
        json={"data": {"done": True}},
        headers={**api.auth(), "Idempotency-Key": "shared"},
    )
    assert output.status_code == 200, output.text
    assert "idempotency-replayed" not in output.headers
    assert len(api.tools.calls) == 2
    assert api.executions.outputs[EXEC] == {"done": True}


def test_a_repeated_output_is_replayed_and_saved_once(idem: Idem) -> None:
    api = idem.start()
    headers = {**api.auth(), "Idempotency-Key": "out-1"}
    path = f"/executions/{EXEC}/output"
    first = api.client.post(path, json={"data": [1, 2]}, headers=headers)
    assert first.json() == {"success": True}
    api.executions.outputs.pop(EXEC)
    second = api.client.post(path, content=b'{ "data" : [1,2] }', headers=headers)
    assert second.headers["idempotency-replayed"] == "true"
    assert second.json() == {"success": True}
    assert EXEC not in api.executions.outputs  # not saved again
    conflict = api.client.post(path, json={"data": [2, 1]}, headers=headers)
    assert_error(conflict, 409, "IDEMPOTENCY_CONFLICT", "Conflict")


def test_without_a_key_nothing_is_kept(idem: Idem) -> None:
    api = idem.start()
    assert _tool(api, None).status_code == 200
    repeat = _tool(api, None)
    assert "idempotency-replayed" not in repeat.headers
    assert len(api.tools.calls) == 2
    assert len(idem.store) == 0


def test_other_routes_ignore_the_key(idem: Idem) -> None:
    api = idem.start()
    headers = {**api.auth(), "Idempotency-Key": "k-1"}
    for _ in range(2):
        answer = api.client.post(
            f"/executions/{EXEC}/condition", json={"condition": True}, headers=headers
        )
        assert answer.status_code == 200
        assert "idempotency-replayed" not in answer.headers
    assert len(idem.store) == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_an_invalid_key_is_refused(idem: Idem, key: str) -> None:
    api = idem.start()
    headers = {**api.auth(), "Idempotency-Key": key}
    # httpx sends the header's text as latin-1 or UTF-8: both are outside printable ASCII.
    answer = api.client.post(
        "/tool-actions/execute",
        json=TOOL_BODY,
        headers={name.encode(): value.encode() for name, value in headers.items()},
    )
    body = assert_error(answer, 400, "INVALID_BODY", "Bad Request")
    assert "Idempotency-Key" in body["message"]
    assert api.tools.calls == []


def test_the_longest_key_is_accepted(idem: Idem) -> None:
    api = idem.start()
    key = "~" * 255
    assert _tool(api, key).status_code == 200
    assert _tool(api, key).headers["idempotency-replayed"] == "true"


def test_a_refused_token_comes_before_the_key(idem: Idem) -> None:
    api = idem.start()
    answer = api.client.post(
        "/tool-actions/execute",
        json=TOOL_BODY,
        headers={"Authorization": "Bearer nonsense", "Idempotency-Key": "k-1"},
    )
    assert answer.status_code == 401
    assert len(idem.store) == 0


def test_a_body_that_is_not_json_is_refused_and_the_refusal_kept(idem: Idem) -> None:
    api = idem.start()
    headers = {**api.auth(), "Idempotency-Key": "k-1", "Content-Type": "application/json"}
    first = api.client.post("/tool-actions/execute", content=b"{not json", headers=headers)
    assert_error(first, 400, "INVALID_JSON", "Bad Request")
    again = api.client.post("/tool-actions/execute", content=b"{not json", headers=headers)
    assert again.headers["idempotency-replayed"] == "true"
    assert again.content == first.content
    other = api.client.post("/tool-actions/execute", content=b"{not json!", headers=headers)
    assert_error(other, 409, "IDEMPOTENCY_CONFLICT", "Conflict")
    assert api.tools.calls == []
