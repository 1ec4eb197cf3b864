"""Rate limits of SPEC section 4: a bucket of `security.rateLimitPerMin` per execution, and
the IETF RateLimit fields on every authenticated answer (here with a limit of 3)."""

from __future__ import annotations

import re

import httpx
import pytest
from http_harness import (
    BOB,
    BOB_EXEC,
    EXEC,
    EXEC_2,
    Api,
    ExplodingExecutionRepository,
    MakeApi,
    assert_error,
)

POLICY = '"exec";q=3;w=60'
RATE_LIMIT = re.compile(r'"exec";r=(?P<r>\d+);t=(?P<t>\d+)')


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api(env={"RATE_LIMIT_PER_MIN": "3", "MAX_BODY_SIZE": "1KiB"})


def remaining_and_reset(response: httpx.Response) -> tuple[int, int]:
    match = RATE_LIMIT.fullmatch(response.headers["RateLimit"])
    assert match, response.headers["RateLimit"]
    return int(match["r"]), int(match["t"])


def test_each_answer_counts_the_remaining_requests_down(api: Api):
    responses = [api.client.get(f"/executions/{EXEC}/input", headers=api.auth()) for _ in range(3)]

    assert [response.status_code for response in responses] == [200, 200, 200]
    assert [response.headers["RateLimit-Policy"] for response in responses] == [POLICY] * 3
    # 3 a minute: one request's share is 20 s. While requests remain, `t` is the time until
    # the bucket is full again; with none left, the time until the next one is allowed.
    assert [remaining_and_reset(response) for response in responses] == [(2, 20), (1, 40), (0, 20)]


def test_the_request_past_the_limit_is_429_rate_limited_with_retry_after(api: Api):
    for _ in range(3):
        api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    body = assert_error(response, 429, "RATE_LIMITED", "Too Many Requests")
    remaining, reset = remaining_and_reset(response)
    assert remaining == 0
    assert int(response.headers["Retry-After"]) == reset == 20
    assert response.headers["RateLimit-Policy"] == POLICY
    assert "3" in body["message"]


def test_a_refused_request_does_not_reach_the_use_case(api: Api):
    for _ in range(3):
        api.client.post(f"/executions/{EXEC}/output", json={"data": "ok"}, headers=api.auth())

    response = api.client.post(
        f"/executions/{EXEC}/output", json={"data": "late"}, headers=api.auth()
    )

    assert response.status_code == 429
    assert api.executions.outputs == {EXEC: "ok"}
    assert len(api.audit.events) == 3


def test_executions_have_separate_buckets(api: Api):
    for _ in range(4):
        api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    other_run = api.client.get(f"/executions/{EXEC_2}/input", headers=api.auth(EXEC_2))
    other_user = api.client.get(f"/executions/{BOB_EXEC}/input", headers=api.auth(BOB_EXEC, BOB))

    assert other_run.status_code == 200
    assert remaining_and_reset(other_run)[0] == 2
    assert other_user.status_code == 200
    assert remaining_and_reset(other_user)[0] == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", f"/executions/{EXEC}/input", None, 200),
        ("POST", f"/executions/{EXEC}/output", {"data": 1}, 200),
        ("GET", f"/executions/{EXEC}/variables/missing", None, 404),
        ("DELETE", f"/executions/{EXEC}/variables/missing", None, 404),
        ("GET", "/executions/exec-gone/input", None, 403),
        ("POST", f"/executions/{EXEC}/condition", {"condition": "maybe"}, 400),
        ("POST", f"/executions/{EXEC}/output", {"data": "x" * 2000}, 413),
        ("PUT", f"/executions/{EXEC}/variables/{'k' * 256}", {"value": 1}, 400),
        ("POST", "/tool-actions/execute", {"tool": "log", "action": "write"}, 200),
    ],
)
def test_every_authenticated_answer_carries_the_rate_limit_fields(
    api: Api, method: str, path: str, body: object, status: int
):
    response = api.client.request(method, path, json=body, headers=api.auth())

    assert response.status_code == status
    assert response.headers["RateLimit-Policy"] == POLICY
    assert remaining_and_reset(response)[0] == 2


def test_a_malformed_body_after_authentication_carries_the_rate_limit_fields(api: Api):
    response = api.client.post(f"/executions/{EXEC}/output", content=b"{oops", headers=api.auth())

    assert_error(response, 400, "INVALID_JSON", "Bad Request")
    assert response.headers["RateLimit-Policy"] == POLICY
    assert remaining_and_reset(response)[0] == 2


def test_an_internal_error_after_authentication_carries_the_rate_limit_fields(
    make_api: MakeApi,
):
    api = make_api(env={"RATE_LIMIT_PER_MIN": "3"}, executions=ExplodingExecutionRepository())

    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    assert_error(response, 500, "INTERNAL", "Internal Server Error")
    assert response.headers["RateLimit-Policy"] == POLICY
    assert remaining_and_reset(response)[0] == 2


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/metrics", "/schema/openapi.json"])
def test_unauthenticated_routes_carry_no_rate_limit_fields(api: Api, path: str):
    response = api.client.get(path, headers=api.auth())

    assert response.status_code == 200
    assert "RateLimit" not in response.headers
    assert "RateLimit-Policy" not in response.headers


def test_a_refused_token_carries_no_rate_limit_fields_and_takes_nothing_from_the_bucket(api: Api):
    refused = api.client.get(f"/executions/{EXEC}/input", headers={"Authorization": "Bearer x"})
    accepted = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    assert refused.status_code == 401
    assert "RateLimit" not in refused.headers
    assert remaining_and_reset(accepted)[0] == 2


def test_the_open_routes_take_nothing_from_a_bucket(api: Api):
    for path in ("/health", "/health/ready", "/metrics"):
        api.client.get(path, headers=api.auth())

    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    assert remaining_and_reset(response)[0] == 2
