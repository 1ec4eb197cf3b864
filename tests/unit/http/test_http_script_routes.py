"""The script API of SPEC section 4, as a helper sees it: statuses, envelopes and bodies."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from http_harness import (
    ALICE,
    BOB,
    BOB_EXEC,
    EXEC,
    EXEC_2,
    INPUT,
    Api,
    MakeApi,
    StubToolGateway,
    alice_execution,
    assert_error,
    raw_request,
)

from adapters.memory.executions import InMemoryExecutionRepository
from domain.model import ExecutionContext, ToolResult

WIRE_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
# FixedClock's T0 (19:04:05.123456) as the wire shows it: milliseconds, truncated, and Z.
T0_ON_THE_WIRE = "2026-11-28T19:04:05.123Z"


# Input


def test_reading_the_input_answers_it_in_the_envelope(api: Api):
    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": INPUT}


def test_an_execution_without_input_answers_data_null_not_an_absent_field(api: Api):
    response = api.client.get(f"/executions/{EXEC_2}/input", headers=api.auth(EXEC_2))

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": None}


def test_reading_the_input_of_an_unknown_execution_is_404_execution_not_found(api: Api):
    response = api.client.get("/executions/exec-gone/input", headers=api.auth("exec-gone"))

    assert_error(response, 404, "EXECUTION_NOT_FOUND", "Not Found")


# Output


@pytest.mark.parametrize(
    "output",
    [{"rows": 3, "ok": True}, [1, "two", None], "done", 42, None, {"nested": {"deep": ["é"]}}],
    ids=["object", "array", "string", "number", "null", "unicode"],
)
def test_writing_the_output_answers_a_bare_200_ack_and_stores_it(api: Api, output: Any):
    response = api.client.post(
        f"/executions/{EXEC}/output", json={"data": output}, headers=api.auth()
    )

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert api.executions.outputs == {EXEC: output}


def test_a_later_output_replaces_the_earlier_one(api: Api):
    for output in ("first", "second"):
        api.client.post(f"/executions/{EXEC}/output", json={"data": output}, headers=api.auth())

    assert api.executions.outputs == {EXEC: "second"}


# Variables


def test_writing_a_variable_answers_it_with_the_runtimes_time_of_the_write(api: Api):
    response = api.client.put(
        f"/executions/{EXEC}/variables/counter", json={"value": 41}, headers=api.auth()
    )

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": {"key": "counter", "value": 41, "updatedAt": T0_ON_THE_WIRE},
    }


def test_reading_a_written_variable_answers_key_value_and_updated_at(api: Api):
    api.client.put(
        f"/executions/{EXEC}/variables/config", json={"value": {"a": [1, None]}}, headers=api.auth()
    )

    response = api.client.get(f"/executions/{EXEC}/variables/config", headers=api.auth())

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "success": True,
        "data": {"key": "config", "value": {"a": [1, None]}, "updatedAt": T0_ON_THE_WIRE},
    }
    assert WIRE_TIMESTAMP.fullmatch(body["data"]["updatedAt"])


def test_a_variable_set_to_null_reads_back_as_null_not_as_missing(api: Api):
    api.client.put(f"/executions/{EXEC}/variables/empty", json={"value": None}, headers=api.auth())

    response = api.client.get(f"/executions/{EXEC}/variables/empty", headers=api.auth())

    assert response.status_code == 200
    assert response.json()["data"]["value"] is None


def test_reading_a_missing_variable_is_404_variable_not_found(api: Api):
    response = api.client.get(f"/executions/{EXEC}/variables/never-set", headers=api.auth())

    body = assert_error(response, 404, "VARIABLE_NOT_FOUND", "Not Found")
    assert "never-set" in body["message"]


def test_deleting_a_variable_answers_a_bare_ack_and_it_is_gone(api: Api):
    api.client.put(f"/executions/{EXEC}/variables/temp", json={"value": 1}, headers=api.auth())

    deleted = api.client.delete(f"/executions/{EXEC}/variables/temp", headers=api.auth())
    read = api.client.get(f"/executions/{EXEC}/variables/temp", headers=api.auth())

    assert deleted.status_code == 200
    assert deleted.json() == {"success": True}
    assert_error(read, 404, "VARIABLE_NOT_FOUND", "Not Found")


def test_deleting_a_missing_variable_is_404_variable_not_found(api: Api):
    response = api.client.delete(f"/executions/{EXEC}/variables/never-set", headers=api.auth())

    assert_error(response, 404, "VARIABLE_NOT_FOUND", "Not Found")


def test_listing_variables_answers_keys_and_write_times_sorted_by_key_without_values(api: Api):
    for key in ("zeta", "alpha", "Mid", "beta"):
        api.client.put(
            f"/executions/{EXEC}/variables/{key}", json={"value": "secret"}, headers=api.auth()
        )

    response = api.client.get(f"/executions/{EXEC}/variables", headers=api.auth())

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": [
            {"key": key, "updatedAt": T0_ON_THE_WIRE} for key in ("Mid", "alpha", "beta", "zeta")
        ],
    }


def test_listing_variables_of_a_user_without_any_answers_an_empty_list(api: Api):
    response = api.client.get(f"/executions/{EXEC}/variables", headers=api.auth())

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": []}


def test_a_variable_written_in_one_run_is_read_by_another_run_of_the_same_user(api: Api):
    api.client.put(f"/executions/{EXEC}/variables/shared", json={"value": 7}, headers=api.auth())

    response = api.client.get(
        f"/executions/{EXEC_2}/variables/shared", headers=api.auth(EXEC_2, ALICE)
    )

    assert response.status_code == 200
    assert response.json()["data"]["value"] == 7


def test_a_variable_of_one_user_is_not_visible_to_another_user(api: Api):
    api.client.put(f"/executions/{EXEC}/variables/mine", json={"value": 7}, headers=api.auth())
    bob = api.auth(BOB_EXEC, BOB)

    read = api.client.get(f"/executions/{BOB_EXEC}/variables/mine", headers=bob)
    listed = api.client.get(f"/executions/{BOB_EXEC}/variables", headers=bob)

    assert_error(read, 404, "VARIABLE_NOT_FOUND", "Not Found")
    assert listed.json() == {"success": True, "data": []}


@pytest.mark.parametrize(
    ("path_key", "key"),
    [
        ("a%2Fb", "a/b"),
        ("with%20space", "with space"),
        ("h%C3%A9llo-%F0%9F%94%91", "héllo-🔑"),
        ("percent%252F", "percent%2F"),
        ("a%2F", "a/"),
        ("%2Fa", "/a"),
        ("a%3Fb", "a?b"),
        ("a+b", "a+b"),
        ("nested/path/key", "nested/path/key"),
    ],
    ids=[
        "encoded slash",
        "space",
        "unicode",
        "encoded percent decoded once",
        "trailing encoded slash",
        "leading encoded slash",
        "encoded question mark",
        "plus stays a plus",
        "raw slashes",
    ],
)
def test_a_url_encoded_key_is_decoded_once(api: Api, path_key: str, key: str):
    written = api.client.put(
        f"/executions/{EXEC}/variables/{path_key}", json={"value": 1}, headers=api.auth()
    )
    read = api.client.get(f"/executions/{EXEC}/variables/{path_key}", headers=api.auth())

    assert written.status_code == 200
    assert written.json()["data"]["key"] == key
    assert read.json()["data"] == {"key": key, "value": 1, "updatedAt": T0_ON_THE_WIRE}


def test_a_key_of_255_characters_is_accepted(api: Api):
    key = "k" * 255

    response = api.client.put(
        f"/executions/{EXEC}/variables/{key}", json={"value": 1}, headers=api.auth()
    )

    assert response.status_code == 200
    assert response.json()["data"]["key"] == key


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize(
    ("path_key", "reason"),
    [
        ("k" * 256, "256"),
        ("%C3%BC" * 256, "256"),
        ("line%0Abreak", "control"),
        ("nul%00", "control"),
        ("a/%2E%2E/b", "'..'"),
        ("%FF%FE", "UTF-8"),
    ],
    ids=[
        "256 characters",
        "256 encoded characters",
        "a newline",
        "a NUL",
        "a '..' segment",
        "not UTF-8 once decoded",
    ],
)
def test_an_invalid_key_is_400_invalid_key_on_every_variable_route(
    api: Api, method: str, path_key: str, reason: str
):
    response = api.client.request(
        method,
        f"/executions/{EXEC}/variables/{path_key}",
        json={"value": 1} if method == "PUT" else None,
        headers=api.auth(),
    )

    body = assert_error(response, 400, "INVALID_KEY", "Bad Request")
    assert reason in body["message"]


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("path", ["variables", "variables/"])
def test_an_empty_key_is_400_invalid_key(api: Api, method: str, path: str):
    response = api.client.request(
        method,
        f"/executions/{EXEC}/{path}",
        json={"value": 1} if method == "PUT" else None,
        headers=api.auth(),
    )

    body = assert_error(response, 400, "INVALID_KEY", "Bad Request")
    assert "empty" in body["message"]


def test_a_server_without_raw_path_still_hands_the_key_over_decoded(api: Api):
    api.client.put(f"/executions/{EXEC}/variables/a b", json={"value": 5}, headers=api.auth())
    auth = (b"authorization", f"Bearer {api.token()}".encode())

    response = raw_request(
        api, "GET", f"/executions/{EXEC}/variables/a b", [auth], with_raw_path=False
    )

    assert response.status == 200
    assert response.json()["data"] == {"key": "a b", "value": 5, "updatedAt": T0_ON_THE_WIRE}


# Condition


@pytest.mark.parametrize("condition", [True, False])
def test_setting_the_condition_answers_a_bare_200_ack_and_stores_it(api: Api, condition: bool):
    response = api.client.post(
        f"/executions/{EXEC}/condition", json={"condition": condition}, headers=api.auth()
    )

    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert api.executions.conditions == {EXEC: condition}


# Context


def test_the_context_answers_every_field_of_the_contract(make_api: MakeApi):
    metadata = {"input": {"x": 1}, "trigger": "manual", "tags": ["a", None], "ratio": 0.5}
    event = {"id": 17, "name": "Nightly report", "type": "PYTHON", "content": "print(1)"}
    user = {"id": ALICE, "email": "alice@example.com", "name": "Alice"}
    started = datetime(2026, 11, 28, 18, 0, 0, 250000, tzinfo=UTC)
    executions = InMemoryExecutionRepository(
        [alice_execution(metadata=metadata, event=event, user=user, start_time=started)]
    )
    api = make_api(executions=executions)

    response = api.client.get(f"/executions/{EXEC}/context", headers=api.auth())

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": {
            "executionId": EXEC,
            "jobId": "job-1",
            "userId": ALICE,
            "eventId": "event-1",
            "id": 17,
            "name": "Nightly report",
            "type": "PYTHON",
            "eventName": "Nightly report",
            "eventType": "PYTHON",
            "startTime": "2026-11-28T18:00:00.250Z",
            "metadata": metadata,
            "event": event,
            "user": user,
        },
    }


def test_a_context_without_event_or_user_answers_them_as_null(make_api: MakeApi):
    executions = InMemoryExecutionRepository(
        [ExecutionContext(execution_id=EXEC, user_id=ALICE, event_id="event-1")]
    )
    api = make_api(executions=executions)

    response = api.client.get(f"/executions/{EXEC}/context", headers=api.auth())

    data = response.json()["data"]
    assert response.status_code == 200
    assert data["event"] is None
    assert data["user"] is None
    assert data["jobId"] is None
    assert data["metadata"] == {}
    assert (data["name"], data["type"], data["eventName"], data["eventType"]) == (None,) * 4
    # Without an event object the top-level `id` still names the event, from `eventId`.
    assert data["id"] == "event-1"


def test_the_start_time_is_fixed_by_the_first_read_of_the_context(api: Api):
    first = api.client.get(f"/executions/{EXEC}/context", headers=api.auth())
    second = api.client.get(f"/executions/{EXEC}/context", headers=api.auth())

    start_time = first.json()["data"]["startTime"]
    assert WIRE_TIMESTAMP.fullmatch(start_time)
    assert second.json()["data"]["startTime"] == start_time


# Tool actions


@pytest.mark.parametrize(
    ("body", "params"),
    [
        ({"params": {"text": "hi"}}, {"text": "hi"}),
        ({"config": {"text": "hi"}}, {"text": "hi"}),
        ({"params": {"text": "params"}, "config": {"text": "config"}}, {"text": "params"}),
        ({"params": None, "config": {"text": "config"}}, {"text": "config"}),
        ({}, {}),
    ],
    ids=["params", "config", "both: params wins", "null params: config", "neither"],
)
def test_a_tool_action_reaches_the_tool_with_params_or_config(
    api: Api, body: dict[str, Any], params: dict[str, Any]
):
    response = api.client.post(
        "/tool-actions/execute",
        json={"tool": "slack", "action": "send_message", **body},
        headers={**api.auth(), "X-Request-ID": "req-tool-1"},
    )

    assert response.status_code == 200
    [call] = api.tools.calls
    assert (call.tool, call.action, call.params) == ("slack", "send_message", params)
    assert (call.execution_id, call.user_id, call.request_id) == (EXEC, ALICE, "req-tool-1")


def test_a_tool_result_is_answered_as_it_is_not_wrapped_in_the_envelope(api: Api):
    response = api.client.post(
        "/tool-actions/execute", json={"tool": "log", "action": "write"}, headers=api.auth()
    )

    assert response.status_code == 200
    assert response.json() == {"success": True, "data": None, "metadata": {"recorded": True}}


def test_a_tool_that_failed_answers_200_with_its_failure_for_the_helper_to_raise(
    make_api: MakeApi,
):
    failure = ToolResult(
        success=False, data={"status": 400}, error="channel_not_found", code="TOOL_FAILED"
    )
    api = make_api(tools=StubToolGateway(failure))

    response = api.client.post(
        "/tool-actions/execute",
        json={"tool": "slack", "action": "send_message", "params": {"text": "hi"}},
        headers=api.auth(),
    )

    assert response.status_code == 200
    assert response.json() == {
        "success": False,
        "data": {"status": 400},
        "error": "channel_not_found",
        "code": "TOOL_FAILED",
    }


def test_a_tool_result_with_data_keeps_data_and_metadata(make_api: MakeApi):
    result = ToolResult(success=True, data=[1, 2], metadata={"tookMs": 12})
    api = make_api(tools=StubToolGateway(result))

    response = api.client.post(
        "/tool-actions/execute", json={"tool": "webhook", "action": "post"}, headers=api.auth()
    )

    assert response.json() == {"success": True, "data": [1, 2], "metadata": {"tookMs": 12}}


@pytest.mark.parametrize("field", ["tool", "action"])
def test_a_blank_tool_or_action_is_400_invalid_body_naming_it(api: Api, field: str):
    body = {"tool": "slack", "action": "send_message", field: "  "}

    response = api.client.post("/tool-actions/execute", json=body, headers=api.auth())

    payload = assert_error(response, 400, "INVALID_BODY", "Bad Request")
    assert field in payload["message"]
    assert api.tools.calls == []


# The token opens only its own execution


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "input", None),
        ("POST", "output", {"data": 1}),
        ("GET", "variables", None),
        ("GET", "variables/k", None),
        ("PUT", "variables/k", {"value": 1}),
        ("DELETE", "variables/k", None),
        ("POST", "condition", {"condition": True}),
        ("GET", "context", None),
    ],
)
def test_another_executions_token_is_403_execution_mismatch_on_every_route(
    api: Api, method: str, path: str, body: Any
):
    response = api.client.request(
        method, f"/executions/{EXEC}/{path}", json=body, headers=api.auth(EXEC_2)
    )

    assert_error(response, 403, "EXECUTION_MISMATCH", "Forbidden")
    assert api.executions.outputs == {}
    assert api.executions.conditions == {}
    listed = api.client.get(f"/executions/{EXEC_2}/variables", headers=api.auth(EXEC_2))
    assert listed.json()["data"] == []
