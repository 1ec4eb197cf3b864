"""The token table of SPEC section 2, as the client sees it: a 401 with its code and a
message saying what to do, on every script route; the open routes need no token. Then the
key ring (rotation), issuers and audience, the verified-token cache and the metrics of
authentication, and weak secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

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
    sample,
)
from loguru import logger

from domain.audit import AuditAction

STRONG_HS512_KEY = "z" * 64
STRONG_HS384_KEY = "w" * 48
VERIFICATIONS = "cronium_runtime_token_verifications_total"
FAILURES = "cronium_runtime_auth_failures_total"


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
        "HS384": bearer(forge(claims(), STRONG_HS384_KEY, algorithm="HS384")),
        "RS256 header over an HS256 signature": bearer(_hand_built({"alg": "RS256"}, claims())),
        "no alg at all": bearer(_hand_built({"typ": "JWT"}, claims())),
        "executionId a list": bearer(forge(claims(executionId=[EXEC]))),
        "userId an object": bearer(forge(claims(userId={"id": "user-alice"}))),
        "userId a boolean": bearer(forge(claims(userId=True))),
        "Bearer alone": {"Authorization": "Bearer"},
        "Basic x": {"Authorization": "Basic x"},
        "garbage header": {"Authorization": "%%% garbage %%%"},
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_built(header: dict[str, Any], payload: dict[str, Any], secret: str = SECRET) -> str:
    """A token with any header, HMAC-SHA256-signed with `secret` as HS256 would be."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


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
    "HS384": "TOKEN_INVALID",
    "RS256 header over an HS256 signature": "TOKEN_INVALID",
    "no alg at all": "TOKEN_INVALID",
    "executionId a list": "TOKEN_INVALID",
    "userId an object": "TOKEN_INVALID",
    "userId a boolean": "TOKEN_INVALID",
    "Bearer alone": "TOKEN_MISSING",
    "Basic x": "TOKEN_MISSING",
    "garbage header": "TOKEN_MISSING",
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


def test_the_refusal_names_what_is_wrong_without_echoing_the_token(api: Api):
    token = forge(claims(), None, algorithm="none")

    response = api.client.get(f"/executions/{EXEC}/input", headers=bearer(token))

    body = assert_error(response, 401, "TOKEN_INVALID", "Unauthorized")
    assert "only HS256" in body["message"]
    assert token not in body["message"]


def within_the_leeway() -> dict[str, dict[str, Any]]:
    """Claims that are off by less than the 30 s leeway: each must be accepted."""
    now = int(time.time())
    return {
        "expired 5 s ago": claims(exp=now - 5, iat=now - 3600, nbf=now - 3600),
        "nbf 20 s ahead": claims(nbf=now + 20),
        "iat 20 s ahead": claims(iat=now + 20),
        "no nbf and no iat": claims(nbf=..., iat=...),
    }


@pytest.mark.parametrize(
    "case", ["expired 5 s ago", "nbf 20 s ahead", "iat 20 s ahead", "no nbf and no iat"]
)
def test_a_token_within_the_leeway_is_accepted(api: Api, case: str):
    token = forge(within_the_leeway()[case])

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


# --- the key ring: tokens name their key by kid; rotation overlaps, removal refuses

NEW_KEY = "n" * 40
OLD_KEY = "o" * 40


def on_the_ring(make_api: MakeApi, ring: str) -> Api:
    """An app whose keys are `JWT_SECRETS` alone (`kid=secret,...`), without `JWT_SECRET`."""
    return make_api(env={"JWT_SECRET": "", "JWT_SECRETS": ring})


def signed(secret: str, kid: str | None) -> dict[str, str]:
    return bearer(forge(claims(), secret, headers={"kid": kid} if kid else None))


@pytest.mark.parametrize(
    ("secret", "kid", "status"),
    [
        pytest.param(NEW_KEY, "new", 200, id="new key, its kid"),
        pytest.param(OLD_KEY, "old", 200, id="old key, its kid"),
        pytest.param(OLD_KEY, None, 200, id="old key, no kid: tried against each"),
        pytest.param(OLD_KEY, "new", 401, id="kid pointing at the wrong key"),
        pytest.param(NEW_KEY, "retired", 401, id="unknown kid"),
        pytest.param(SECRET, None, 401, id="a key not on the ring"),
    ],
)
def test_while_both_keys_are_configured_either_opens_its_tokens(
    make_api: MakeApi, secret: str, kid: str | None, status: int
):
    api = on_the_ring(make_api, f"new={NEW_KEY},old={OLD_KEY}")

    response = api.client.get(f"/executions/{EXEC}/input", headers=signed(secret, kid))

    if status == 200:
        assert response.status_code == 200
    else:
        assert_error(response, 401, "TOKEN_INVALID", "Unauthorized")


@pytest.mark.parametrize("kid", ["old", None], ids=["with its kid", "without a kid"])
def test_once_the_old_key_is_removed_its_tokens_are_refused(make_api: MakeApi, kid: str | None):
    before = on_the_ring(make_api, f"new={NEW_KEY},old={OLD_KEY}")
    headers = signed(OLD_KEY, kid)
    assert before.client.get(f"/executions/{EXEC}/input", headers=headers).status_code == 200

    after = on_the_ring(make_api, f"new={NEW_KEY}")

    response = after.client.get(f"/executions/{EXEC}/input", headers=headers)
    assert_error(response, 401, "TOKEN_INVALID", "Unauthorized")
    new_token = after.client.get(f"/executions/{EXEC}/input", headers=signed(NEW_KEY, "new"))
    assert new_token.status_code == 200


def test_the_service_signs_with_the_first_key_of_the_ring(make_api: MakeApi):
    api = on_the_ring(make_api, f"new={NEW_KEY},old={OLD_KEY}")

    token = api.token()

    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] == "new"
    signing_input = token.rsplit(".", 1)[0].encode()
    expected = _b64(hmac.new(NEW_KEY.encode(), signing_input, hashlib.sha256).digest())
    assert token.split(".")[2] == expected


# --- issuers and audience: checked only when configured

ISSUERS_AND_AUDIENCE = {
    "JWT_ISSUERS": "cronium-orchestrator,cronium-runtime",
    "JWT_AUDIENCE": "cronium-runtime",
}


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        pytest.param({"iss": "cronium-orchestrator", "aud": "cronium-runtime"}, 200, id="good"),
        pytest.param(
            {"iss": "cronium-runtime", "aud": ["x", "cronium-runtime"]}, 200, id="aud list"
        ),
        pytest.param({"iss": "mallory", "aud": "cronium-runtime"}, 401, id="wrong iss"),
        pytest.param({"aud": "cronium-runtime"}, 401, id="no iss"),
        pytest.param({"iss": "cronium-orchestrator", "aud": "elsewhere"}, 401, id="wrong aud"),
        pytest.param({"iss": "cronium-orchestrator"}, 401, id="no aud"),
    ],
)
def test_configured_issuers_and_audience_are_checked(
    make_api: MakeApi, overrides: dict[str, Any], status: int
):
    api = make_api(env=ISSUERS_AND_AUDIENCE)

    response = api.client.get(
        f"/executions/{EXEC}/input", headers=bearer(forge(claims(**overrides)))
    )

    if status == 200:
        assert response.status_code == 200
    else:
        assert_error(response, 401, "TOKEN_INVALID", "Unauthorized")


def test_issuer_and_audience_are_ignored_when_not_configured(api: Api):
    token = forge(claims(iss="anybody", aud="somebody-else"))

    response = api.client.get(f"/executions/{EXEC}/input", headers=bearer(token))

    assert response.status_code == 200


def test_the_services_own_tokens_pass_its_issuer_and_audience_checks(make_api: MakeApi):
    api = make_api(env=ISSUERS_AND_AUDIENCE)

    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    assert response.status_code == 200


# --- the verified-token cache and the metrics of authentication


def test_a_hundred_requests_with_one_token_cost_one_signature_check(api: Api):
    headers = api.auth()
    before = sample(api, VERIFICATIONS)

    answers = [api.client.get(f"/executions/{EXEC}/input", headers=headers) for _ in range(100)]

    assert {answer.status_code for answer in answers} == {200}
    assert sample(api, VERIFICATIONS) - before == 1


def test_each_refused_token_is_checked_again_and_never_cached(api: Api):
    headers = bearer(forge(claims(), OTHER_SECRET))

    for _ in range(3):
        response = api.client.get(f"/executions/{EXEC}/input", headers=headers)
        assert_error(response, 401, "TOKEN_INVALID", "Unauthorized")

    assert sample(api, VERIFICATIONS) == 3


def test_a_cached_token_still_expires_on_time(make_api: MakeApi):
    api = make_api(env={"JWT_LEEWAY": "0s"})
    now = time.time()
    token = forge(claims(exp=int(now) + 2, iat=int(now), nbf=int(now)))
    assert api.client.get(f"/executions/{EXEC}/input", headers=bearer(token)).status_code == 200

    deadline = time.monotonic() + 10
    while time.time() < int(now) + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    response = api.client.get(f"/executions/{EXEC}/input", headers=bearer(token))

    assert_error(response, 401, "TOKEN_EXPIRED", "Unauthorized")


def test_authentication_failures_are_counted_by_code(api: Api):
    for headers in ({}, {}, bearer("garbage"), bearer(forge(claims(exp=int(time.time()) - 99)))):
        api.client.get(f"/executions/{EXEC}/input", headers=headers)
    api.client.get(f"/executions/{EXEC}/input", headers=api.auth())

    counted = {
        code: sample(api, FAILURES, code=code)
        for code in ("TOKEN_MISSING", "TOKEN_INVALID", "TOKEN_EXPIRED", "TOKEN_REVOKED")
    }
    assert counted == {
        "TOKEN_MISSING": 2,
        "TOKEN_INVALID": 1,
        "TOKEN_EXPIRED": 1,
        "TOKEN_REVOKED": 0,
    }


def test_a_token_for_another_execution_is_not_an_authentication_failure(api: Api):
    response = api.client.get(f"/executions/{EXEC}/input", headers=api.auth("exec-other"))

    assert_error(response, 403, "EXECUTION_MISMATCH", "Forbidden")
    assert sample(api, FAILURES, code="EXECUTION_MISMATCH") == 0


# --- weak secrets: only with auth.allowWeakSecret, with a warning at every start

WEAK = "short-secret"


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    yield messages
    logger.remove(sink)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_an_allowed_weak_secret_works_and_warns_at_every_start_without_showing_it(
    make_api: MakeApi, warnings_logged: list[str]
):
    env = {"JWT_SECRET": WEAK, "ALLOW_WEAK_SECRET": "true"}
    api = make_api(env=env)
    make_api(env=env)

    # A client signing with the weak secret gets pyjwt's warning: expected here only.
    orchestrator_token = forge(claims(), WEAK)
    for headers in (api.auth(), bearer(orchestrator_token)):
        assert api.client.get(f"/executions/{EXEC}/input", headers=headers).status_code == 200

    weak = [message for message in warnings_logged if "allowWeakSecret" in message]
    assert len(weak) == 2
    assert "the secret of auth.jwtSecret is 12 bytes" in weak[0]
    assert all(WEAK not in message for message in warnings_logged)


def test_every_weak_key_of_the_ring_is_named_by_its_kid(
    make_api: MakeApi, warnings_logged: list[str]
):
    make_api(env={"JWT_SECRETS": f"new={NEW_KEY},old={WEAK}", "ALLOW_WEAK_SECRET": "true"})

    weak = [message for message in warnings_logged if "allowWeakSecret" in message]
    assert len(weak) == 1
    assert 'the secret of kid "old" of auth.jwtSecrets is 12 bytes' in weak[0]


def test_strong_secrets_start_without_a_weak_secret_warning(
    make_api: MakeApi, warnings_logged: list[str]
):
    make_api(env={"JWT_SECRETS": f"new={NEW_KEY},old={OLD_KEY}"})

    assert not [message for message in warnings_logged if "allowWeakSecret" in message]
