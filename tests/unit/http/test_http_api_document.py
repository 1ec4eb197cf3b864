"""The API document (`/schema/openapi.json`) states what the service does: every route with
its body, security and possible answers, the error envelope with its codes, and the rules of
a variable key, so that a client, or schemathesis, can rely on it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from http_harness import MakeApi

from domain.errors import InvalidKeyError
from domain.model import validate_variable_key

INTERNAL_TOKEN = "internal-token-of-the-document-tests"
EXECUTION = "/executions/{execution_id}"
VARIABLE = f"{EXECUTION}/variables/{{key}}"
REVOKE = "/internal/executions/{execution_id}/revoke"

SCRIPT_ERRORS = {"401", "429", "500", "502", "503"}
# (method, path): the error statuses it documents beyond SCRIPT_ERRORS.
SCRIPT_OPERATIONS = {
    ("get", f"{EXECUTION}/input"): {"403", "404"},
    ("post", f"{EXECUTION}/output"): {"400", "403", "404", "409", "413"},
    ("get", f"{EXECUTION}/variables"): {"403", "404"},
    ("put", f"{EXECUTION}/variables"): {"400", "403", "404", "413"},
    ("delete", f"{EXECUTION}/variables"): {"400", "403", "404"},
    ("get", VARIABLE): {"400", "403", "404"},
    ("put", VARIABLE): {"400", "403", "404", "413"},
    ("delete", VARIABLE): {"400", "403", "404"},
    ("post", f"{EXECUTION}/condition"): {"400", "403", "404", "413"},
    ("get", f"{EXECUTION}/context"): {"403", "404"},
    ("post", "/tool-actions/execute"): {"400", "404", "409", "413"},
}
OPEN_OPERATIONS = {("get", "/health"), ("get", "/health/ready"), ("get", "/metrics")}
# Each error status: its reason phrase and the codes it comes with (SPEC section 3).
CODES = {
    "400": ("Bad Request", {"INVALID_JSON", "INVALID_BODY", "INVALID_KEY", "INVALID_TOOL_PARAMS"}),
    "401": ("Unauthorized", {"TOKEN_MISSING", "TOKEN_INVALID", "TOKEN_EXPIRED", "TOKEN_REVOKED"}),
    # FORBIDDEN: Litestar's own 403, which the error handler can still be handed.
    "403": ("Forbidden", {"EXECUTION_MISMATCH", "FORBIDDEN"}),
    "404": (
        "Not Found",
        {"VARIABLE_NOT_FOUND", "EXECUTION_NOT_FOUND", "TOOL_NOT_FOUND", "NOT_FOUND"},
    ),
    "405": ("Method Not Allowed", {"METHOD_NOT_ALLOWED"}),
    "409": ("Conflict", {"IDEMPOTENCY_CONFLICT"}),
    "413": ("Content Too Large", {"BODY_TOO_LARGE"}),
    "429": ("Too Many Requests", {"RATE_LIMITED"}),
    "500": ("Internal Server Error", {"INTERNAL"}),
    "502": ("Bad Gateway", {"BACKEND_ERROR", "BACKEND_AUTH_FAILED"}),
    "503": (
        "Service Unavailable",
        {"BACKEND_UNAVAILABLE", "AUDIT_UNAVAILABLE", "DEADLINE_EXCEEDED", "SHUTTING_DOWN"},
    ),
}


@pytest.fixture
def document(make_api: MakeApi) -> dict[str, Any]:
    api = make_api(env={"INTERNAL_TOKEN": INTERNAL_TOKEN})
    response = api.client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = document["components"][section][name]
    return node


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return document["paths"][path][method]


def body_schema(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    body = operation(document, method, path)["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    # A body with a description of its own is `allOf: [its schema]`.
    (schema,) = schema.get("allOf", [schema])
    return resolve(document, schema)


# Routes and security


def test_the_document_lists_every_route_and_no_other(document: dict[str, Any]):
    listed = {(method, path) for path, item in document["paths"].items() for method in item}

    assert listed == {*SCRIPT_OPERATIONS, *OPEN_OPERATIONS, ("post", REVOKE)}


def test_the_internal_route_is_absent_without_an_internal_token(make_api: MakeApi):
    document = make_api().client.get("/schema/openapi.json").json()

    assert not any(path.startswith("/internal") for path in document["paths"])


def test_script_routes_take_the_execution_token_and_health_and_metrics_take_none(
    document: dict[str, Any],
):
    schemes = document["components"]["securitySchemes"]

    for scheme in ("bearer", "internalToken"):
        assert schemes[scheme]["type"] == "http"
        assert schemes[scheme]["scheme"] == "bearer"
    assert schemes["bearer"]["bearerFormat"] == "JWT"
    for method, path in SCRIPT_OPERATIONS:
        assert operation(document, method, path)["security"] == [{"bearer": []}], path
    for method, path in OPEN_OPERATIONS:
        assert "security" not in operation(document, method, path), path
    assert "security" not in document
    assert operation(document, "post", REVOKE)["security"] == [{"internalToken": []}]


# Answers


def test_each_script_route_documents_the_errors_it_can_answer_and_no_422(
    document: dict[str, Any],
):
    for (method, path), errors in SCRIPT_OPERATIONS.items():
        statuses = set(operation(document, method, path)["responses"])
        failures = statuses - {"200"}

        assert failures == SCRIPT_ERRORS | errors, (method, path)


def test_the_empty_key_routes_document_no_success(document: dict[str, Any]):
    for method in ("put", "delete"):
        statuses = operation(document, method, f"{EXECUTION}/variables")["responses"]

        assert not any(status.startswith("2") for status in statuses)
        assert "400" in statuses


def test_open_routes_document_their_answers(document: dict[str, Any]):
    ready = operation(document, "get", "/health/ready")["responses"]
    metrics = operation(document, "get", "/metrics")["responses"]

    assert set(ready) == {"200", "503", "500"}
    assert resolve(document, ready["503"]["content"]["application/json"]["schema"]) == (
        resolve(document, ready["200"]["content"]["application/json"]["schema"])
    )
    assert set(metrics) == {"200", "500"}
    assert "text/plain" in metrics["200"]["content"]


@pytest.mark.parametrize("status", sorted(CODES))
def test_every_error_answer_is_the_envelope_with_its_phrase_and_codes(
    document: dict[str, Any], status: str
):
    phrase, codes = CODES[status]
    answer = document["components"]["responses"][phrase.replace(" ", "")]
    schema = answer["content"]["application/json"]["schema"]

    assert schema["type"] == "object"
    assert set(schema["required"]) == {"success", "error", "message", "code"}
    assert schema["additionalProperties"] is False
    assert schema["properties"]["success"] == {"const": False}
    assert schema["properties"]["error"]["const"] == phrase
    assert schema["properties"]["message"]["minLength"] == 1
    assert set(schema["properties"]["code"]["enum"]) == codes
    assert "X-Request-ID" in answer["headers"]


def test_a_429_documents_retry_after_and_the_rate_limit_fields(document: dict[str, Any]):
    answer = resolve(document, operation(document, "get", f"{EXECUTION}/input")["responses"]["429"])
    headers = {name: resolve(document, header) for name, header in answer["headers"].items()}

    assert set(headers) == {"X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy"}
    assert headers["Retry-After"]["required"] is True
    assert headers["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    assert re.fullmatch(headers["RateLimit"]["schema"]["pattern"], '"exec";r=0;t=3')
    assert re.fullmatch(headers["RateLimit-Policy"]["schema"]["pattern"], '"exec";q=1000;w=60')


def test_a_405_documents_the_allow_header(document: dict[str, Any]):
    answer = document["components"]["responses"]["MethodNotAllowed"]

    assert resolve(document, answer["headers"]["Allow"])["required"] is True


def test_success_answers_carry_the_request_id_and_script_ones_the_rate_limit_fields(
    document: dict[str, Any],
):
    for method, path in [*SCRIPT_OPERATIONS, *OPEN_OPERATIONS, ("post", REVOKE)]:
        for status, answer in operation(document, method, path)["responses"].items():
            if not status.startswith("2"):
                continue
            headers = set(answer["headers"])
            rate_limited = (method, path) in SCRIPT_OPERATIONS

            assert "X-Request-ID" in headers, path
            assert ({"RateLimit", "RateLimit-Policy"} <= headers) is rate_limited, path


def test_output_and_tool_actions_document_the_idempotency_key(document: dict[str, Any]):
    for path in (f"{EXECUTION}/output", "/tool-actions/execute"):
        parameters = operation(document, "post", path)["parameters"]
        (key,) = [parameter for parameter in parameters if parameter["name"] == "Idempotency-Key"]

        assert key["in"] == "header"
        assert key["required"] is False
        assert key["schema"]["maxLength"] == 255
        assert (
            "Idempotency-Replayed"
            in operation(document, "post", path)["responses"]["200"]["headers"]
        )


# Request rules


def test_request_bodies_state_their_required_fields_and_types(document: dict[str, Any]):
    condition = body_schema(document, "post", f"{EXECUTION}/condition")
    output = body_schema(document, "post", f"{EXECUTION}/output")
    variable = body_schema(document, "put", VARIABLE)
    tool = body_schema(document, "post", "/tool-actions/execute")

    assert condition["required"] == ["condition"]
    assert condition["properties"]["condition"]["type"] == "boolean"
    assert output["required"] == ["data"]
    assert variable["required"] == ["value"]
    assert sorted(tool["required"]) == ["action", "tool"]
    for name in ("tool", "action"):
        assert tool["properties"][name]["type"] == "string"
        assert tool["properties"][name]["pattern"] == r"\S"
    for name in ("params", "config"):
        kinds = {option["type"] for option in tool["properties"][name]["oneOf"]}
        assert kinds == {"object", "null"}


KEYS = [
    "k",
    "a/b",
    "/a",
    "a/",
    "a.b",
    "..a",
    "a..",
    ".hidden",
    "with space",
    "é" * 255,
    "日本😀",
    "k" * 255,
    "",
    "k" * 256,
    "é" * 256,
    "a\nb",
    "nul\x00",
    "del\x7f",
    "c1\x85",
    ".",
    "..",
    "../x",
    "a/../b",
    "a/.",
    "./a",
    "a/..",
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_the_documented_key_rules_accept_exactly_the_keys_the_service_takes(
    document: dict[str, Any], key: str
):
    parameters = operation(document, "put", VARIABLE)["parameters"]
    (schema,) = [parameter["schema"] for parameter in parameters if parameter["name"] == "key"]
    try:
        validate_variable_key(key)
        taken = True
    except InvalidKeyError:
        taken = False

    documented = (
        schema["minLength"] <= len(key) <= schema["maxLength"]
        and re.search(schema["pattern"], key) is not None
    )

    assert documented is taken
