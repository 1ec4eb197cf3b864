"""The audit trail as the HTTP layer feeds it: one event per script operation, carrying the
request id the client saw and the client's address (SPEC section 9)."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import pytest
from http_harness import ALICE, EXEC, EXEC_2, Api

from domain.audit import OUTCOME_OK, AuditAction

TEST_CLIENT_ADDRESS = "testclient"  # what Litestar's test client puts in the ASGI scope


class Operation(NamedTuple):
    method: str
    path: str
    body: Any
    action: AuditAction
    key: str | None = None


OPERATIONS = [
    Operation("GET", "input", None, AuditAction.GET_INPUT),
    Operation("POST", "output", {"data": "s3cr3t-output"}, AuditAction.SET_OUTPUT),
    Operation("PUT", "variables/k", {"value": "s3cr3t-value"}, AuditAction.SET_VARIABLE, "k"),
    Operation("GET", "variables", None, AuditAction.LIST_VARIABLES),
    Operation("POST", "condition", {"condition": True}, AuditAction.SET_CONDITION),
    Operation("GET", "context", None, AuditAction.GET_CONTEXT),
]


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.action.value for op in OPERATIONS])
def test_each_script_operation_records_one_event_with_the_request_id_and_client_address(
    api: Api, operation: Operation
):
    response = api.client.request(
        operation.method,
        f"/executions/{EXEC}/{operation.path}",
        json=operation.body,
        headers={**api.auth(), "X-Request-ID": "req-audit-1"},
    )

    assert response.status_code == 200
    [event] = api.audit.events
    assert event.action == operation.action
    assert event.execution_id == EXEC
    assert event.details.request_id == "req-audit-1"
    assert event.details.client_address == TEST_CLIENT_ADDRESS
    assert event.details.user_id == ALICE
    assert event.details.event_id == "event-1"
    assert event.details.outcome == OUTCOME_OK
    assert event.details.key == operation.key


def test_reading_and_deleting_a_variable_record_one_event_each(api: Api):
    api.client.put(f"/executions/{EXEC}/variables/k", json={"value": 1}, headers=api.auth())

    api.client.get(f"/executions/{EXEC}/variables/k", headers={**api.auth(), "X-Request-ID": "r-g"})
    api.client.delete(
        f"/executions/{EXEC}/variables/k", headers={**api.auth(), "X-Request-ID": "r-d"}
    )

    assert [(e.action, e.details.key, e.details.request_id) for e in api.audit.events[1:]] == [
        (AuditAction.GET_VARIABLE, "k", "r-g"),
        (AuditAction.DELETE_VARIABLE, "k", "r-d"),
    ]


def test_a_tool_action_records_the_tool_and_its_action(api: Api):
    api.client.post(
        "/tool-actions/execute",
        json={"tool": "slack", "action": "send_message", "config": {"text": "s3cr3t"}},
        headers={**api.auth(), "X-Request-ID": "req-tool"},
    )

    [event] = api.audit.events
    assert event.action == AuditAction.EXECUTE_TOOL_ACTION
    assert (event.details.tool, event.details.tool_action) == ("slack", "send_message")
    assert event.details.request_id == "req-tool"
    assert event.details.client_address == TEST_CLIENT_ADDRESS


def test_the_generated_request_id_in_the_audit_event_is_the_one_the_client_saw(api: Api):
    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    [event] = api.audit.events
    assert event.details.request_id == response.headers["X-Request-ID"]


# (method, path, body, execution of the token, outcome)
REFUSED = {
    "VARIABLE_NOT_FOUND": ("GET", f"/executions/{EXEC}/variables/missing", None, EXEC),
    "INVALID_KEY": ("PUT", f"/executions/{EXEC}/variables/{'k' * 256}", {"value": 1}, EXEC),
    "EXECUTION_NOT_FOUND": ("GET", "/executions/exec-gone/input", None, "exec-gone"),
    "EXECUTION_MISMATCH": ("POST", f"/executions/{EXEC}/output", {"data": 1}, EXEC_2),
}


@pytest.mark.parametrize("outcome", REFUSED)
def test_a_refused_operation_records_its_error_code_as_the_outcome(api: Api, outcome: str):
    method, path, body, token_execution = REFUSED[outcome]

    response = api.client.request(
        method,
        path,
        json=body,
        headers={**api.auth(token_execution), "X-Request-ID": "req-refused"},
    )

    assert response.json()["code"] == outcome
    [event] = api.audit.events
    assert event.details.outcome == outcome
    assert event.details.request_id == "req-refused"
    assert event.details.client_address == TEST_CLIENT_ADDRESS


@pytest.mark.parametrize(
    ("method", "path", "body", "secret"),
    [
        ("POST", f"/executions/{EXEC}/output", {"data": "s3cr3t-output"}, "s3cr3t-output"),
        ("PUT", f"/executions/{EXEC}/variables/k", {"value": "s3cr3t-value"}, "s3cr3t-value"),
        (
            "POST",
            "/tool-actions/execute",
            {"tool": "log", "action": "write", "params": {"token": "s3cr3t-param"}},
            "s3cr3t-param",
        ),
    ],
)
def test_the_moved_value_is_recorded_only_as_its_hmac(
    api: Api, method: str, path: str, body: Any, secret: str
):
    api.client.request(method, path, json=body, headers=api.auth())

    [event] = api.audit.events
    assert event.details.value_hmac is not None
    assert event.details.value_hmac.startswith("hmac-sha256:")
    assert secret.encode() not in msgspec.json.encode(event)


def test_bodies_refused_before_the_handler_record_no_operation(api: Api):
    api.client.post(f"/executions/{EXEC}/output", content=b"{oops", headers=api.auth())
    api.client.post(f"/executions/{EXEC}/condition", json={"condition": "x"}, headers=api.auth())

    assert api.audit.events == []


def test_a_refused_token_records_one_auth_denied_event_without_claims(api: Api):
    api.client.get(
        f"/executions/{EXEC}/input",
        headers={"Authorization": "Bearer not-a-jwt", "X-Request-ID": "req-denied"},
    )

    [event] = api.audit.events
    assert event.action == AuditAction.AUTH_DENIED
    assert event.execution_id == EXEC
    assert event.details.outcome == "TOKEN_INVALID"
    assert event.details.request_id == "req-denied"
    assert event.details.client_address == TEST_CLIENT_ADDRESS
    assert (event.details.user_id, event.details.event_id, event.details.job_id) == (None,) * 3
