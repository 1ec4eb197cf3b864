"""The error envelope of SPEC section 3, for the domain's errors and for Litestar's own:
every refusal is `{"success": false, "error", "message", "code"}` with the fixed reason
phrase, input errors are 400 (never 422) and a bug is a 500 that names the request id."""

from __future__ import annotations

from typing import Any

import pytest
from http_harness import (
    EXEC,
    Api,
    ExplodingExecutionRepository,
    ExplodingRateLimiter,
    MakeApi,
    RaisingExecutionRepository,
    RaisingToolGateway,
    assert_error,
)

from domain.errors import (
    AuditUnavailableError,
    BackendAuthFailedError,
    BackendError,
    BackendUnavailableError,
    DeadlineExceededError,
    DomainError,
    ExecutionNotFoundError,
    IdempotencyConflictError,
    InvalidToolParamsError,
    ShuttingDownError,
    ToolNotFoundError,
)

# Routes taking a JSON body, with a body each accepts.
BODY_ROUTES = {
    "output": ("POST", f"/executions/{EXEC}/output"),
    "variable": ("PUT", f"/executions/{EXEC}/variables/k"),
    "condition": ("POST", f"/executions/{EXEC}/condition"),
    "tool action": ("POST", "/tool-actions/execute"),
}
REASONS = {404: "Not Found", 503: "Service Unavailable"}
PARAMS_OBJECT = "params must be a JSON object or null"
CONFIG_OBJECT = "config must be a JSON object or null"


def nested(depth: int) -> bytes:
    """`{"data": [[...]]}` with `depth` levels of nesting, the outer object included."""
    return b'{"data": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


# Litestar's own errors: routing and size


@pytest.mark.parametrize(
    "path", ["/nowhere", f"/executions/{EXEC}/outputs", f"/executions/{EXEC}", "/tool-actions"]
)
def test_an_unknown_route_is_404_not_found_in_the_envelope(api: Api, path: str):
    response = api.client.get(path, headers=api.auth())

    assert_error(response, 404, "NOT_FOUND", "Not Found")


def test_an_unknown_route_is_404_even_without_a_token(api: Api):
    response = api.client.post("/nowhere", content=b"{not json")

    assert_error(response, 404, "NOT_FOUND", "Not Found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", f"/executions/{EXEC}/input", {"GET"}),
        ("GET", f"/executions/{EXEC}/output", {"POST"}),
        ("PATCH", f"/executions/{EXEC}/variables/k", {"GET", "PUT", "DELETE"}),
        ("PATCH", f"/executions/{EXEC}/variables", {"GET", "PUT", "DELETE"}),
        ("PUT", f"/executions/{EXEC}/condition", {"POST"}),
        ("POST", f"/executions/{EXEC}/context", {"GET"}),
        ("GET", "/tool-actions/execute", {"POST"}),
        ("DELETE", "/health", {"GET"}),
        ("POST", "/health/ready", {"GET"}),
        ("PUT", "/metrics", {"GET"}),
    ],
)
def test_a_known_route_with_another_method_is_405_with_an_allow_header(
    api: Api, method: str, path: str, allowed: set[str]
):
    response = api.client.request(method, path, headers=api.auth())

    body = assert_error(response, 405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
    listed = {name.strip() for name in response.headers["Allow"].split(",")}
    # OPTIONS is answered on every route (CORS preflight), so the header may name it too.
    assert listed - {"OPTIONS"} == allowed
    assert method not in listed
    assert all(name in body["message"] for name in allowed)


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_a_body_over_the_size_limit_is_413_body_too_large(make_api: MakeApi, route: str):
    api = make_api(env={"MAX_BODY_SIZE": "1KiB"})
    method, path = BODY_ROUTES[route]
    body = b'{"data": "' + b"a" * 1100 + b'"}'

    response = api.client.request(
        method, path, content=body, headers={**api.auth(), "Content-Type": "application/json"}
    )

    message = assert_error(response, 413, "BODY_TOO_LARGE", "Content Too Large")["message"]
    assert "1024" in message


def test_a_chunked_body_over_the_size_limit_is_413_body_too_large(make_api: MakeApi):
    api = make_api(env={"MAX_BODY_SIZE": "1KiB"})
    chunks = iter([b'{"data": "', b"a" * 600, b"a" * 600, b'"}'])  # no Content-Length

    response = api.client.post(f"/executions/{EXEC}/output", content=chunks, headers=api.auth())

    assert_error(response, 413, "BODY_TOO_LARGE", "Content Too Large")
    assert api.executions.outputs == {}


def test_a_body_of_exactly_the_size_limit_is_accepted(make_api: MakeApi):
    api = make_api(env={"MAX_BODY_SIZE": "1KiB"})
    padding = 1024 - len(b'{"data": ""}')
    body = b'{"data": "' + b"a" * padding + b'"}'
    assert len(body) == 1024

    response = api.client.post(
        f"/executions/{EXEC}/output",
        content=body,
        headers={**api.auth(), "Content-Type": "application/json"},
    )

    assert response.status_code == 200
    assert api.executions.outputs == {EXEC: "a" * padding}


# Bodies that are not JSON


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(
    ("body", "hint"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"data": 1} trailing', "not valid JSON"),
        (b"[" * 10_000 + b"]" * 10_000, "deeper than 64"),
        (b'{"data": "caf\xe9"}', "UTF-8"),
        (b"\xff\xfe{\x00}\x00", "UTF-8"),
    ],
    ids=["malformed", "trailing text", "nested 10000 deep", "latin-1 text", "UTF-16"],
)
def test_a_body_that_is_not_json_is_400_invalid_json(api: Api, route: str, body: bytes, hint: str):
    method, path = BODY_ROUTES[route]

    response = api.client.request(
        method, path, content=body, headers={**api.auth(), "Content-Type": "application/json"}
    )

    message = assert_error(response, 400, "INVALID_JSON", "Bad Request")["message"]
    assert hint in message


def test_a_body_nested_as_deep_as_the_limit_is_accepted(api: Api):
    response = api.client.post(f"/executions/{EXEC}/output", content=nested(64), headers=api.auth())

    assert response.status_code == 200


def test_a_body_nested_one_level_deeper_than_the_limit_is_400_invalid_json(api: Api):
    response = api.client.post(f"/executions/{EXEC}/output", content=nested(65), headers=api.auth())

    assert_error(response, 400, "INVALID_JSON", "Bad Request")


def test_brackets_inside_strings_do_not_count_as_nesting(api: Api):
    text = '\\"' + "[{" * 500
    body = b'{"data": "' + text.encode() + b'"}'

    response = api.client.post(f"/executions/{EXEC}/output", content=body, headers=api.auth())

    assert response.status_code == 200
    assert api.executions.outputs == {EXEC: '"' + "[{" * 500}


def test_the_nesting_limit_is_a_setting(make_api: MakeApi):
    api = make_api(env={"MAX_JSON_DEPTH": "3"})

    shallow = api.client.post(f"/executions/{EXEC}/output", content=nested(3), headers=api.auth())
    deep = api.client.post(f"/executions/{EXEC}/output", content=nested(4), headers=api.auth())

    assert shallow.status_code == 200
    message = assert_error(deep, 400, "INVALID_JSON", "Bad Request")["message"]
    assert "deeper than 3" in message


# JSON of the wrong shape


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("condition", {"condition": "yes"}, "condition must be true or false"),
        ("condition", {"condition": None}, "condition must be true or false"),
        ("condition", {"condition": 1.5}, "condition must be true or false"),
        ("condition", {}, "condition is required"),
        ("output", {"output": 1}, "data is required"),
        ("variable", {"val": 1}, "value is required"),
        ("tool action", {"action": "send"}, "tool is required"),
        ("tool action", {"tool": "slack"}, "action is required"),
        ("tool action", {"tool": 7, "action": "send"}, "tool must be a string"),
        ("tool action", {"tool": "t", "action": "a", "params": [1]}, PARAMS_OBJECT),
        ("tool action", {"tool": "t", "action": "a", "config": "x"}, CONFIG_OBJECT),
    ],
)
def test_json_of_the_wrong_shape_is_400_invalid_body_naming_the_field(
    api: Api, route: str, body: Any, message: str
):
    method, path = BODY_ROUTES[route]

    response = api.client.request(method, path, json=body, headers=api.auth())

    assert assert_error(response, 400, "INVALID_BODY", "Bad Request")["message"] == message


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "the request body must be a JSON object"),
        (b'[{"data": 1}]', "the request body must be a JSON object"),
        (b"null", "the request body must be a JSON object"),
        (b'"text"', "the request body must be a JSON object"),
        (b"", "the request body is empty; send a JSON object"),
    ],
    ids=["empty array", "array", "null", "string", "empty body"],
)
def test_a_body_that_is_not_an_object_is_400_invalid_body(
    api: Api, route: str, body: bytes, message: str
):
    method, path = BODY_ROUTES[route]

    response = api.client.request(
        method, path, content=body, headers={**api.auth(), "Content-Type": "application/json"}
    )

    assert assert_error(response, 400, "INVALID_BODY", "Bad Request")["message"] == message


@pytest.mark.parametrize("condition", [0, 1, "true", "false"])
def test_a_condition_that_is_not_a_json_boolean_is_refused(api: Api, condition: Any):
    response = api.client.post(
        f"/executions/{EXEC}/condition", json={"condition": condition}, headers=api.auth()
    )

    body = assert_error(response, 400, "INVALID_BODY", "Bad Request")
    assert body["message"] == "condition must be true or false"
    assert api.executions.conditions == {}


def test_unknown_fields_in_a_body_are_ignored(api: Api):
    response = api.client.post(
        f"/executions/{EXEC}/output", json={"data": 1, "timestamp": "now"}, headers=api.auth()
    )

    assert response.status_code == 200


# Bugs


def test_an_unexpected_error_is_500_internal_quoting_the_request_id_without_a_traceback(
    make_api: MakeApi,
):
    api = make_api(executions=ExplodingExecutionRepository())

    response = api.client.get(
        f"/executions/{EXEC}/input", headers={**api.auth(), "X-Request-ID": "req-500-abc"}
    )

    body = assert_error(response, 500, "INTERNAL", "Internal Server Error")
    assert "req-500-abc" in body["message"]
    assert response.headers["X-Request-ID"] == "req-500-abc"
    for leak in ("Traceback", "RuntimeError", "on fire", "File ", ".py"):
        assert leak not in response.text


def test_an_unexpected_error_without_a_client_request_id_quotes_the_generated_one(
    make_api: MakeApi,
):
    api = make_api(executions=ExplodingExecutionRepository())

    response = api.client.post(f"/executions/{EXEC}/output", json={"data": 1}, headers=api.auth())

    body = assert_error(response, 500, "INTERNAL", "Internal Server Error")
    assert response.headers["X-Request-ID"] in body["message"]


def test_an_unexpected_error_in_the_authentication_middleware_is_an_enveloped_500(
    make_api: MakeApi,
):
    api = make_api(overrides={"rate_limiter": ExplodingRateLimiter()})

    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    body = assert_error(response, 500, "INTERNAL", "Internal Server Error")
    assert response.headers["X-Request-ID"] in body["message"]
    assert "on fire" not in response.text


# The error table of SPEC section 3, for errors raised behind the handler


@pytest.mark.parametrize(
    ("error", "status", "code", "phrase"),
    [
        (InvalidToolParamsError("text is required"), 400, "INVALID_TOOL_PARAMS", "Bad Request"),
        (ToolNotFoundError("fax", "send"), 404, "TOOL_NOT_FOUND", "Not Found"),
        (IdempotencyConflictError(), 409, "IDEMPOTENCY_CONFLICT", "Conflict"),
        (BackendError(), 502, "BACKEND_ERROR", "Bad Gateway"),
        (BackendAuthFailedError(), 502, "BACKEND_AUTH_FAILED", "Bad Gateway"),
        (BackendUnavailableError(), 503, "BACKEND_UNAVAILABLE", "Service Unavailable"),
        (AuditUnavailableError(), 503, "AUDIT_UNAVAILABLE", "Service Unavailable"),
        (DeadlineExceededError(), 503, "DEADLINE_EXCEEDED", "Service Unavailable"),
        (ShuttingDownError(), 503, "SHUTTING_DOWN", "Service Unavailable"),
        (DomainError(), 500, "INTERNAL", "Internal Server Error"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_a_domain_error_is_answered_with_its_status_code_and_phrase(
    make_api: MakeApi, error: DomainError, status: int, code: str, phrase: str
):
    api = make_api(tools=RaisingToolGateway(error))

    response = api.client.post(
        "/tool-actions/execute", json={"tool": "slack", "action": "send"}, headers=api.auth()
    )

    body = assert_error(response, status, code, phrase)
    if status == 500:  # a DomainError the table does not know is a bug like any other
        assert response.headers["X-Request-ID"] in body["message"]
    else:
        assert body["message"] == error.message


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BackendUnavailableError(), 503, "BACKEND_UNAVAILABLE"),
        (ExecutionNotFoundError("exec-x"), 404, "EXECUTION_NOT_FOUND"),
    ],
)
def test_a_domain_error_from_the_system_of_record_is_answered_on_every_execution_route(
    make_api: MakeApi, error: DomainError, status: int, code: str
):
    api = make_api(executions=RaisingExecutionRepository(error))

    responses = [
        api.client.request(method, f"/executions/{EXEC}/{path}", json=body, headers=api.auth())
        for method, path, body in [
            ("GET", "input", None),
            ("POST", "output", {"data": 1}),
            ("POST", "condition", {"condition": False}),
            ("GET", "context", None),
        ]
    ]

    for response in responses:
        assert_error(response, status, code, REASONS[status])
