"""The token table of SPEC section 2, as the client sees it: a 401 with its code and a
message saying what to do, on every script route; the open routes need no token."""

from __future__ import annotations

import time

import pytest
from http_harness import (
    EXEC,
    OTHER_SECRET,
    SECRET,
    Api,
    MakeApi,
    assert_error,
    bearer,
    claims,
    forge,
    raw_request,
)

from domain.audit import AuditAction

STRONG_HS512_KEY = "z" * 64


def refused_headers() -> dict[str, dict[str, str]]:
    """Authorization headers that must not open EXEC, by what is wrong with them."""
    now = int(time.time())
    return {
        "no header": {},
        "Basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
        "Bearer with no token": {"Authorization": "Bearer "},
        "a bare token without scheme": {"Authorization": forge(claims())},
        "garbage": bearer("not-a-jwt"),
        "three dots of garbage": bearer("a.b.c"),
        "wrong secret": bearer(forge(claims(), OTHER_SECRET)),
        "tampered payload": bearer(_tampered(forge(claims()))),
        "expired beyond the leeway": bearer(forge(claims(exp=now - 120, iat=now - 3600))),
        "alg none": bearer(forge(claims(), None, algorithm="none")),
        "HS512": bearer(forge(claims(), STRONG_HS512_KEY, algorithm="HS512")),
        "HS256 header over an HS512 signature": bearer(_alg_swapped(forge(claims(), SECRET))),
        "no exp": bearer(forge(claims(exp=...))),
        "no executionId": bearer(forge(claims(executionId=...))),
        "no userId": bearer(forge(claims(userId=...))),
        "empty executionId": bearer(forge(claims(executionId=""))),
        "exp not a number": bearer(forge(claims(exp="tomorrow"))),
        "not valid yet": bearer(forge(claims(nbf=now + 600))),
        "issued in the future": bearer(forge(claims(iat=now + 600))),
        "unknown kid": bearer(forge(claims(), headers={"kid": "rotated-away"})),
    }


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    return ".".join((header, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), signature))


def _alg_swapped(token: str) -> str:
    """A token claiming HS256 in its header whose signature is not HS256's."""
    _, payload, signature = token.split(".")
    header = forge(claims(), STRONG_HS512_KEY, algorithm="HS512").split(".")[0]
    return ".".join((header, payload, signature))


REFUSALS = {
    "no header": "TOKEN_MISSING",
    "Basic scheme": "TOKEN_MISSING",
    "Bearer with no token": "TOKEN_MISSING",
    "a bare token without scheme": "TOKEN_MISSING",
    "garbage": "TOKEN_INVALID",
    "three dots of garbage": "TOKEN_INVALID",
    "wrong secret": "TOKEN_INVALID",
    "tampered payload": "TOKEN_INVALID",
    "expired beyond the leeway": "TOKEN_EXPIRED",
    "alg none": "TOKEN_INVALID",
    "HS512": "TOKEN_INVALID",
    "HS256 header over an HS512 signature": "TOKEN_INVALID",
    "no exp": "TOKEN_INVALID",
    "no executionId": "TOKEN_INVALID",
    "no userId": "TOKEN_INVALID",
    "empty executionId": "TOKEN_INVALID",
    "exp not a number": "TOKEN_INVALID",
    "not valid yet": "TOKEN_INVALID",
    "issued in the future": "TOKEN_INVALID",
    "unknown kid": "TOKEN_INVALID",
}

SCRIPT_ROUTES = [
    ("GET", f"/executions/{EXEC}/input", None),
    ("POST", f"/executions/{EXEC}/output", {"data": 1}),
    ("GET", f"/executions/{EXEC}/variables", None),
    ("GET", f"/executions/{EXEC}/variables/k", None),
    ("PUT", f"/executions/{EXEC}/variables/k", {"value": 1}),
    ("DELETE", f"/executions/{EXEC}/variables/k", None),
    ("POST", f"/executions/{EXEC}/condition", {"condition": True}),
    ("GET", f"/executions/{EXEC}/context", None),
    ("POST", "/tool-actions/execute", {"tool": "log", "action": "write"}),
]


@pytest.mark.parametrize("case", REFUSALS)
def test_a_bad_token_is_401_with_its_code_and_a_message(api: Api, case: str):
    response = api.client.get(f"/executions/{EXEC}/input", headers=refused_headers()[case])

    assert_error(response, 401, REFUSALS[case], "Unauthorized")


@pytest.mark.parametrize(("method", "path", "body"), SCRIPT_ROUTES)
def test_every_script_route_needs_a_token(api: Api, method: str, path: str, body: object):
    response = api.client.request(method, path, json=body)

    assert_error(response, 401, "TOKEN_MISSING", "Unauthorized")
    assert api.executions.outputs == {}
    assert api.tools.calls == []


@pytest.mark.parametrize(("method", "path", "body"), SCRIPT_ROUTES)
def test_every_script_route_refuses_a_forged_token_before_touching_anything(
    api: Api, method: str, path: str, body: object
):
    response = api.client.request(
        method, path, json=body, headers=bearer(forge(claims(), OTHER_SECRET))
    )

    assert_error(response, 401, "TOKEN_INVALID", "Unauthorized")
    assert api.executions.outputs == {}
    assert api.executions.conditions == {}
    assert api.tools.calls == []
    assert all(event.action == AuditAction.AUTH_DENIED for event in api.audit.events)


def test_a_token_expired_within_the_leeway_is_accepted(api: Api):
    now = int(time.time())
    token = forge(claims(exp=now - 5, iat=now - 3600, nbf=now - 3600))

    response = api.client.get(f"/executions/{EXEC}/input", headers=bearer(token))

    assert response.status_code == 200


def test_the_leeway_is_a_setting(make_api: MakeApi):
    api = make_api(env={"JWT_LEEWAY": "0s"})
    now = int(time.time())
    token = forge(claims(exp=now - 5, iat=now - 3600, nbf=now - 3600))

    response = api.client.get(f"/executions/{EXEC}/input", headers=bearer(token))

    assert_error(response, 401, "TOKEN_EXPIRED", "Unauthorized")


def test_an_orchestrator_token_with_every_claim_and_numeric_ids_is_accepted(make_api: MakeApi):
    api = make_api()
    now = int(time.time())
    token = forge(
        claims(
            executionId=EXEC,
            userId=42,
            eventId=7,
            jobId=...,
            job_id="job-legacy",
            scope="execution",
            sub=EXEC,
            iss="cronium-orchestrator",
            iat=now,
            nbf=now,
            exp=now + 7200,
        )
    )

    response = api.client.get(f"/executions/{EXEC}/variables", headers=bearer(token))

    assert response.status_code == 200


def test_the_bearer_scheme_is_case_insensitive(api: Api):
    response = api.client.get(
        f"/executions/{EXEC}/input", headers={"Authorization": f"bearer {api.token()}"}
    )

    assert response.status_code == 200


def test_two_authorization_headers_are_401_token_invalid_even_when_both_are_good(api: Api):
    good = f"Bearer {api.token()}".encode()

    response = raw_request(api, "GET", f"/executions/{EXEC}/input", [(b"authorization", good)] * 2)

    body = response.json()
    assert response.status == 401
    assert body == {
        "success": False,
        "error": "Unauthorized",
        "message": body["message"],
        "code": "TOKEN_INVALID",
    }
    assert "one Authorization header" in body["message"]


def test_two_authorization_headers_joined_into_one_value_are_401_token_invalid(api: Api):
    # What the test client (and an RFC 9110 proxy) makes of a repeated header: one value.
    good = f"Bearer {api.token()}"

    response = api.client.get(
        f"/executions/{EXEC}/input", headers=[("authorization", good), ("authorization", good)]
    )

    assert_error(response, 401, "TOKEN_INVALID", "Unauthorized")


def test_another_executions_token_on_this_executions_path_is_403_execution_mismatch(api: Api):
    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth("exec-other"))

    body = assert_error(response, 403, "EXECUTION_MISMATCH", "Forbidden")
    assert "exec-other" in body["message"]


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/metrics", "/schema/openapi.json"])
def test_the_open_routes_answer_without_a_token(api: Api, path: str):
    response = api.client.get(path)

    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/metrics"])
def test_the_open_routes_ignore_a_bad_token(api: Api, path: str):
    response = api.client.get(path, headers=bearer("garbage"))

    assert response.status_code == 200
