"""Revocation through the internal API (SPEC section 2): the internal token's door, the
`revoke` audit event, and the revoked execution's tokens refused at once, cache or not."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from http_harness import (
    BOB_EXEC,
    EXEC,
    EXEC_2,
    Api,
    MakeApi,
    assert_error,
    bearer,
    raw_request,
    sample,
    start_api,
)

from domain.audit import AuditAction, AuditDetails

INTERNAL = "internal-token-of-the-orchestrator-0123456789"
BACKEND_TOKEN = "backend-service-token-abcdefghijklmnopqrstu"
FAILURES = "cronium_runtime_auth_failures_total"


def revoke_path(execution_id: str = EXEC) -> str:
    return f"/internal/executions/{execution_id}/revoke"


def revoke(api: Api, execution_id: str = EXEC, token: str = INTERNAL) -> object:
    return api.client.post(revoke_path(execution_id), headers=bearer(token))


@pytest.fixture
def internal_api(make_api: MakeApi) -> Api:
    return make_api(env={"INTERNAL_TOKEN": INTERNAL})


# --- the internal door


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("headers", [{}, bearer(INTERNAL)], ids=["no token", "a token"])
def test_without_an_internal_token_the_internal_routes_do_not_exist(
    api: Api, method: str, headers: dict[str, str]
):
    response = api.client.request(method, revoke_path(), headers=headers)

    assert_error(response, 404, "NOT_FOUND", "Not Found")
    assert api.audit.events == []


def test_the_internal_token_is_the_backend_token_unless_set(make_api: MakeApi):
    api = make_api(env={"BACKEND_URL": "http://127.0.0.1:9", "BACKEND_TOKEN": BACKEND_TOKEN})

    assert revoke(api, token=BACKEND_TOKEN).json() == {"success": True}
    assert_error(revoke(api, token=INTERNAL), 401, "TOKEN_INVALID", "Unauthorized")


def test_a_set_internal_token_wins_over_the_backend_token(make_api: MakeApi):
    api = make_api(
        env={
            "BACKEND_URL": "http://127.0.0.1:9",
            "BACKEND_TOKEN": BACKEND_TOKEN,
            "INTERNAL_TOKEN": INTERNAL,
        }
    )

    assert_error(revoke(api, token=BACKEND_TOKEN), 401, "TOKEN_INVALID", "Unauthorized")
    assert revoke(api, token=INTERNAL).status_code == 200


def internal_refusals(api: Api) -> dict[str, tuple[dict[str, str], str]]:
    return {
        "no header": ({}, "TOKEN_MISSING"),
        "Basic scheme": ({"Authorization": f"Basic {INTERNAL}"}, "TOKEN_MISSING"),
        "Bearer alone": ({"Authorization": "Bearer"}, "TOKEN_MISSING"),
        "wrong token": (bearer("not-the-internal-token"), "TOKEN_INVALID"),
        "the token with a character more": (bearer(INTERNAL + "x"), "TOKEN_INVALID"),
        "the token's prefix": (bearer(INTERNAL[:-1]), "TOKEN_INVALID"),
        "an execution token": (api.auth(), "TOKEN_INVALID"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no header",
        "Basic scheme",
        "Bearer alone",
        "wrong token",
        "the token with a character more",
        "the token's prefix",
        "an execution token",
    ],
)
def test_a_missing_or_wrong_internal_token_is_401_and_revokes_nothing(internal_api: Api, case: str):
    headers, code = internal_refusals(internal_api)[case]

    response = internal_api.client.post(revoke_path(), headers=headers)

    body = assert_error(response, 401, code, "Unauthorized")
    assert "internal token" in body["message"]
    script = internal_api.client.get(f"/executions/{EXEC}/input", headers=internal_api.auth())
    assert script.status_code == 200
    [denied] = [e for e in internal_api.audit.events if e.action == AuditAction.AUTH_DENIED]
    assert (denied.execution_id, denied.details.outcome) == (EXEC, code)
    assert sample(internal_api, FAILURES, code=code) == 1


def test_two_authorization_headers_on_the_internal_route_are_401_token_invalid(
    internal_api: Api,
):
    good = f"Bearer {INTERNAL}".encode()

    response = raw_request(internal_api, "POST", revoke_path(), [(b"authorization", good)] * 2)

    assert response.status == 401
    assert response.json()["code"] == "TOKEN_INVALID"


def test_the_internal_route_takes_no_rate_limit_headers(internal_api: Api):
    response = revoke(internal_api)

    assert response.status_code == 200
    assert "RateLimit" not in response.headers


# --- revoking


def test_revoking_answers_success_and_revoking_again_is_fine(internal_api: Api):
    first = revoke(internal_api)
    second = revoke(internal_api)

    assert (first.status_code, first.json()) == (200, {"success": True})
    assert (second.status_code, second.json()) == (200, {"success": True})


def test_a_revocation_is_audited_about_the_execution_with_no_user(internal_api: Api):
    revoke(internal_api, EXEC_2)

    [event] = [e for e in internal_api.audit.events if e.action == AuditAction.REVOKE]
    assert event.execution_id == EXEC_2
    assert event.details == AuditDetails(
        outcome="ok", request_id=event.details.request_id, client_address="testclient"
    )
    assert event.details.request_id


def test_a_revoked_executions_token_is_refused_at_once_though_it_was_cached(
    internal_api: Api,
):
    headers = internal_api.auth()
    assert internal_api.client.get(f"/executions/{EXEC}/input", headers=headers).status_code == 200

    revoke(internal_api)
    response = internal_api.client.get(f"/executions/{EXEC}/input", headers=headers)

    body = assert_error(response, 401, "TOKEN_REVOKED", "Unauthorized")
    assert "revoked" in body["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/executions/{EXEC}/input", None),
        ("POST", f"/executions/{EXEC}/output", {"data": 1}),
        ("PUT", f"/executions/{EXEC}/variables/k", {"value": 1}),
        ("POST", f"/executions/{EXEC}/condition", {"condition": True}),
        ("POST", "/tool-actions/execute", {"tool": "log", "action": "write"}),
    ],
)
def test_every_token_of_a_revoked_execution_is_refused_on_every_route(
    internal_api: Api, method: str, path: str, body: object
):
    revoke(internal_api)
    minted_after = internal_api.auth()

    response = internal_api.client.request(method, path, json=body, headers=minted_after)

    assert_error(response, 401, "TOKEN_REVOKED", "Unauthorized")
    assert internal_api.executions.outputs == {}
    assert internal_api.tools.calls == []


def test_other_executions_are_unaffected_by_a_revocation(internal_api: Api):
    revoke(internal_api, EXEC)

    mine = internal_api.client.get(f"/executions/{EXEC_2}/input", headers=internal_api.auth(EXEC_2))
    bobs = internal_api.client.get(
        f"/executions/{BOB_EXEC}/input", headers=internal_api.auth(BOB_EXEC, "user-bob")
    )

    assert (mine.status_code, bobs.status_code) == (200, 200)


def test_a_refused_revoked_token_is_audited_and_counted(internal_api: Api):
    revoke(internal_api)

    internal_api.client.get(f"/executions/{EXEC}/input", headers=internal_api.auth())

    denied = [e for e in internal_api.audit.events if e.action == AuditAction.AUTH_DENIED]
    assert [(e.execution_id, e.details.outcome) for e in denied] == [(EXEC, "TOKEN_REVOKED")]
    assert sample(internal_api, FAILURES, code="TOKEN_REVOKED") == 1


def test_a_revocation_survives_a_restart_on_the_same_store(make_api: MakeApi, tmp_path: Path):
    with ExitStack() as first_run:
        revoke(start_api(first_run, tmp_path, env={"INTERNAL_TOKEN": INTERNAL}))

    second = make_api(env={"INTERNAL_TOKEN": INTERNAL})
    response = second.client.get(f"/executions/{EXEC}/input", headers=second.auth())

    assert_error(response, 401, "TOKEN_REVOKED", "Unauthorized")
