from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from typing import Any

import jwt
import pytest

from adapters.auth.jwt import JwtTokenCodec, SigningKey
from domain.errors import TokenExpiredError, TokenInvalidError
from domain.model import Principal

NOW = 1_800_000_000.0
SECRET = "s" * 40
OTHER_SECRET = "o" * 40


def make_codec(**overrides: Any) -> JwtTokenCodec:
    options: dict[str, Any] = {"keys": [SigningKey(kid=None, secret=SECRET)], "clock": lambda: NOW}
    options.update(overrides)
    return JwtTokenCodec(**options)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "executionId": "exec-1",
        "userId": "user-1",
        "eventId": "event-1",
        "jobId": "job-1",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 3600,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not ...}


def sign(
    payload: dict[str, Any],
    secret: str = SECRET,
    *,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


def unverified(token: str, secret: str) -> dict[str, Any]:
    """The claims of a signed token, without judging its times against the real clock."""
    times = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
    return jwt.decode(token, secret, algorithms=["HS256"], options=times)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_built(header: dict[str, Any], payload: bytes, secret: str | None = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    if secret is None:
        return f"{signing_input}."
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


# Issuing and the round trip.


async def test_a_token_it_issues_verifies_back_to_the_same_principal() -> None:
    codec = make_codec()
    principal = Principal(execution_id="exec-1", user_id="user-1", event_id="ev", job_id="job")

    token = codec.issue(principal, ttl_seconds=3600)
    verified = await codec.verify(token)

    assert verified == Principal(
        execution_id="exec-1",
        user_id="user-1",
        event_id="ev",
        job_id="job",
        expires_at=int(NOW) + 3600,
    )


def test_an_issued_token_carries_the_orchestrators_claims_and_the_first_keys_kid() -> None:
    codec = make_codec(
        keys=[SigningKey(kid="k1", secret=SECRET), SigningKey(kid="k2", secret=OTHER_SECRET)],
        clock=lambda: NOW + 0.7,
    )
    principal = Principal(execution_id="exec-1", user_id="user-1", event_id="ev", job_id="job")

    token = codec.issue(principal, ttl_seconds=120)

    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    assert unverified(token, SECRET) == {
        "executionId": "exec-1",
        "userId": "user-1",
        "eventId": "ev",
        "jobId": "job",
        "scope": "execution",
        "sub": "exec-1",
        "iss": "cronium-runtime",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 120,
    }


def test_an_issued_token_leaves_out_the_ids_and_the_kid_it_does_not_have() -> None:
    codec = make_codec(issuer="somebody")

    token = codec.issue(Principal(execution_id="e", user_id="u"), ttl_seconds=60)

    payload = unverified(token, SECRET)
    assert "kid" not in jwt.get_unverified_header(token)
    assert "eventId" not in payload
    assert "jobId" not in payload
    assert payload["iss"] == "somebody"


@pytest.mark.parametrize(
    ("audience", "expected_aud"), [(["runtime"], "runtime"), (["a", "b"], ["a", "b"])]
)
async def test_an_issued_token_carries_the_configured_audience_so_it_verifies(
    audience: list[str], expected_aud: str | list[str]
) -> None:
    codec = make_codec(audience=audience)

    token = codec.issue(Principal(execution_id="e", user_id="u"), ttl_seconds=60)

    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["aud"] == expected_aud
    assert (await codec.verify(token)).execution_id == "e"


@pytest.mark.parametrize("ttl", [0, -5])
def test_issuing_a_token_with_no_lifetime_is_refused(ttl: float) -> None:
    codec = make_codec()

    with pytest.raises(ValueError, match="lifetime"):
        codec.issue(Principal(execution_id="e", user_id="u"), ttl_seconds=ttl)


def test_issuing_with_a_secret_pyjwt_will_not_use_for_hmac_raises_a_value_error() -> None:
    pem = (
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    )
    codec = make_codec(keys=[SigningKey(kid=None, secret=pem)])

    with pytest.raises(ValueError, match="cannot sign"):
        codec.issue(Principal(execution_id="e", user_id="u"), ttl_seconds=60)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "at least one"),
        ([SigningKey(kid=None, secret="")], "empty secret"),
        ([SigningKey(kid="a", secret=SECRET), SigningKey(kid="a", secret=OTHER_SECRET)], "kid"),
    ],
)
def test_a_codec_refuses_keys_it_cannot_use(keys: list[SigningKey], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JwtTokenCodec(keys=keys)


# Time claims.


async def test_a_token_expired_beyond_the_leeway_is_refused_as_expired() -> None:
    codec = make_codec(leeway=30)
    token = sign(claims(exp=int(NOW) - 31))

    with pytest.raises(TokenExpiredError):
        await codec.verify(token)


async def test_a_token_expired_within_the_leeway_is_accepted() -> None:
    codec = make_codec(leeway=30)
    token = sign(claims(exp=int(NOW) - 29))

    principal = await codec.verify(token)

    assert principal.expires_at == int(NOW) - 29


async def test_a_fractional_exp_is_accepted_and_rounded_down() -> None:
    codec = make_codec()
    token = sign(claims(exp=NOW + 100.75))

    principal = await codec.verify(token)

    assert principal.expires_at == int(NOW) + 100


async def test_a_token_whose_nbf_is_beyond_the_leeway_is_refused() -> None:
    codec = make_codec(leeway=30)
    token = sign(claims(nbf=int(NOW) + 31))

    with pytest.raises(TokenInvalidError, match="not valid yet"):
        await codec.verify(token)


async def test_a_token_whose_nbf_is_within_the_leeway_is_accepted() -> None:
    codec = make_codec(leeway=30)
    token = sign(claims(nbf=int(NOW) + 29))

    assert (await codec.verify(token)).execution_id == "exec-1"


async def test_a_token_issued_in_the_future_beyond_the_leeway_is_refused() -> None:
    codec = make_codec(leeway=30)
    token = sign(claims(iat=int(NOW) + 31))

    with pytest.raises(TokenInvalidError, match="iat"):
        await codec.verify(token)


async def test_a_token_issued_in_the_future_within_the_leeway_is_accepted() -> None:
    codec = make_codec(leeway=30)
    token = sign(claims(iat=int(NOW) + 29))

    assert (await codec.verify(token)).execution_id == "exec-1"


async def test_a_token_without_nbf_and_iat_is_accepted() -> None:
    codec = make_codec()
    token = sign(claims(nbf=..., iat=...))

    assert (await codec.verify(token)).user_id == "user-1"


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "tomorrow"), ("exp", True), ("exp", float("inf")), ("nbf", "now"), ("iat", [1])],
)
async def test_a_time_claim_that_is_not_a_finite_number_is_refused(claim: str, value: Any) -> None:
    codec = make_codec()
    token = sign(claims(**{claim: value}))

    with pytest.raises(TokenInvalidError, match=claim):
        await codec.verify(token)


# Algorithms.


async def test_an_unsigned_alg_none_token_is_refused() -> None:
    codec = make_codec()
    token = hand_built({"alg": "none", "typ": "JWT"}, json.dumps(claims()).encode())

    with pytest.raises(TokenInvalidError, match="'none'; only HS256"):
        await codec.verify(token)


async def test_an_hs512_token_signed_with_the_right_secret_is_refused() -> None:
    secret = "5" * 64
    codec = make_codec(keys=[SigningKey(kid=None, secret=secret)])
    token = sign(claims(), secret, algorithm="HS512")

    with pytest.raises(TokenInvalidError, match="'HS512'; only HS256"):
        await codec.verify(token)


async def test_a_token_with_an_rs256_header_is_refused() -> None:
    codec = make_codec()
    token = hand_built({"alg": "RS256", "typ": "JWT"}, json.dumps(claims()).encode(), SECRET)

    with pytest.raises(TokenInvalidError, match="'RS256'; only HS256"):
        await codec.verify(token)


@pytest.mark.parametrize("header", [{"typ": "JWT"}, {"alg": 256}, {"alg": "HS256'; DROP TABLE"}])
async def test_a_missing_or_strange_algorithm_is_refused_without_repeating_it(
    header: dict[str, Any],
) -> None:
    codec = make_codec()
    token = hand_built(header, json.dumps(claims()).encode(), SECRET)

    with pytest.raises(TokenInvalidError, match="algorithm is not HS256") as caught:
        await codec.verify(token)

    assert "DROP" not in caught.value.message


# Malformed tokens and signatures.


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "...",
        f"{b64(b'not json')}.{b64(b'{}')}.",
        f"{b64(b'[1]')}.{b64(b'{}')}.",
    ],
)
async def test_garbage_is_refused_as_invalid_without_echoing_it(token: str) -> None:
    codec = make_codec()

    with pytest.raises(TokenInvalidError, match="not a well-formed JWT") as caught:
        await codec.verify(token)

    assert not token or token not in caught.value.message


async def test_a_signed_payload_that_is_not_json_is_refused_as_malformed() -> None:
    codec = make_codec()
    token = hand_built({"alg": "HS256", "typ": "JWT"}, b"not json", SECRET)

    with pytest.raises(TokenInvalidError, match="not a well-formed JWT"):
        await codec.verify(token)


async def test_a_token_signed_with_another_secret_is_refused() -> None:
    codec = make_codec()
    token = sign(claims(), OTHER_SECRET)

    with pytest.raises(TokenInvalidError, match="signature") as caught:
        await codec.verify(token)

    assert token not in caught.value.message
    assert caught.value.__cause__ is None


async def test_a_token_with_a_critical_header_extension_it_cannot_honour_is_refused() -> None:
    codec = make_codec()
    token = sign(claims(), headers={"crit": ["exp"], "exp": 1})

    with pytest.raises(TokenInvalidError, match="the token is not valid"):
        await codec.verify(token)


# Required claims and their values.


@pytest.mark.parametrize("claim", ["exp", "executionId", "userId"])
async def test_a_token_missing_a_required_claim_is_refused_naming_it(claim: str) -> None:
    codec = make_codec()
    token = sign(claims(**{claim: ...}))

    with pytest.raises(TokenInvalidError, match=f"required claim '{claim}'"):
        await codec.verify(token)


async def test_a_null_required_claim_counts_as_missing() -> None:
    codec = make_codec()
    token = sign(claims(executionId=None))

    with pytest.raises(TokenInvalidError, match="required claim 'executionId'"):
        await codec.verify(token)


async def test_an_empty_required_id_is_refused() -> None:
    codec = make_codec()
    token = sign(claims(userId=""))

    with pytest.raises(TokenInvalidError, match="'userId' is empty"):
        await codec.verify(token)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("executionId", ["exec-1"]), ("userId", True), ("eventId", 1.5), ("jobId", {"id": 1})],
)
async def test_an_id_claim_of_the_wrong_type_is_refused(claim: str, value: Any) -> None:
    codec = make_codec()
    token = sign(claims(**{claim: value}))

    with pytest.raises(TokenInvalidError, match=f"'{claim}' must be a string"):
        await codec.verify(token)


async def test_numeric_ids_from_older_orchestrators_become_strings() -> None:
    codec = make_codec()
    token = sign(claims(executionId=42, userId=7, eventId=3, jobId=9))

    principal = await codec.verify(token)

    assert (principal.execution_id, principal.user_id) == ("42", "7")
    assert (principal.event_id, principal.job_id) == ("3", "9")


async def test_the_old_job_id_claim_is_read_when_job_id_is_absent() -> None:
    codec = make_codec()
    token = sign(claims(jobId=..., job_id="old-job"))

    assert (await codec.verify(token)).job_id == "old-job"


async def test_job_id_wins_over_the_old_claim_when_both_come() -> None:
    codec = make_codec()
    token = sign(claims(jobId="new-job", job_id="old-job"))

    assert (await codec.verify(token)).job_id == "new-job"


async def test_absent_or_empty_optional_ids_become_none() -> None:
    codec = make_codec()
    token = sign(claims(eventId="", jobId=...))

    principal = await codec.verify(token)

    assert (principal.event_id, principal.job_id) == (None, None)


async def test_a_numeric_sub_from_an_older_orchestrator_is_not_refused() -> None:
    codec = make_codec()
    token = sign(claims(sub=42, jti=7))

    assert (await codec.verify(token)).execution_id == "exec-1"


# Keys.


def two_keys() -> list[SigningKey]:
    return [SigningKey(kid="a", secret=SECRET), SigningKey(kid="b", secret=OTHER_SECRET)]


async def test_a_token_naming_a_kid_is_checked_against_that_key() -> None:
    codec = make_codec(keys=two_keys())
    token = sign(claims(), OTHER_SECRET, headers={"kid": "b"})

    assert (await codec.verify(token)).execution_id == "exec-1"


async def test_a_token_naming_a_kid_is_checked_against_that_key_only() -> None:
    codec = make_codec(keys=two_keys())
    token = sign(claims(), SECRET, headers={"kid": "b"})

    with pytest.raises(TokenInvalidError, match="signature"):
        await codec.verify(token)


async def test_a_token_naming_an_unknown_kid_is_refused() -> None:
    codec = make_codec(keys=two_keys())
    token = sign(claims(), SECRET, headers={"kid": "zzz"})

    with pytest.raises(TokenInvalidError, match="unknown key id"):
        await codec.verify(token)


async def test_a_token_naming_a_kid_is_refused_when_no_key_has_one() -> None:
    codec = make_codec()
    token = sign(claims(), SECRET, headers={"kid": "a"})

    with pytest.raises(TokenInvalidError, match="unknown key id"):
        await codec.verify(token)


async def test_a_token_whose_kid_is_not_a_string_is_refused() -> None:
    codec = make_codec(keys=two_keys())
    token = hand_built({"alg": "HS256", "kid": 1}, json.dumps(claims()).encode(), SECRET)

    with pytest.raises(TokenInvalidError, match="the token is not valid"):
        await codec.verify(token)


async def test_a_token_without_a_kid_is_tried_against_every_key() -> None:
    codec = make_codec(keys=[*two_keys(), SigningKey(kid=None, secret="n" * 40)])

    first = await codec.verify(sign(claims(), SECRET))
    second = await codec.verify(sign(claims(), OTHER_SECRET))
    third = await codec.verify(sign(claims(), "n" * 40))

    assert first == second == third


# Issuers and audience.


async def test_a_token_from_a_configured_issuer_is_accepted() -> None:
    codec = make_codec(issuers=["cronium-orchestrator", "cronium-runtime"])
    token = sign(claims(iss="cronium-orchestrator"))

    assert (await codec.verify(token)).execution_id == "exec-1"


@pytest.mark.parametrize(("iss", "message"), [("mallory", "issuer"), (..., "required claim 'iss'")])
async def test_a_token_from_another_or_no_issuer_is_refused_when_issuers_are_configured(
    iss: Any, message: str
) -> None:
    codec = make_codec(issuers=["cronium-orchestrator"])
    token = sign(claims(iss=iss))

    with pytest.raises(TokenInvalidError, match=message):
        await codec.verify(token)


async def test_the_issuer_is_not_checked_when_no_issuers_are_configured() -> None:
    codec = make_codec()
    token = sign(claims(iss="anybody"))

    assert (await codec.verify(token)).execution_id == "exec-1"


async def test_a_token_for_a_configured_audience_is_accepted() -> None:
    codec = make_codec(audience=["runtime", "other"])
    token = sign(claims(aud=["elsewhere", "runtime"]))

    assert (await codec.verify(token)).execution_id == "exec-1"


@pytest.mark.parametrize(
    ("aud", "message"), [("elsewhere", "audience"), (..., "required claim 'aud'")]
)
async def test_a_token_for_another_or_no_audience_is_refused_when_an_audience_is_configured(
    aud: Any, message: str
) -> None:
    codec = make_codec(audience=["runtime"])
    token = sign(claims(aud=aud))

    with pytest.raises(TokenInvalidError, match=message):
        await codec.verify(token)


async def test_the_audience_is_not_checked_when_none_is_configured() -> None:
    codec = make_codec()
    token = sign(claims(aud="somebody-else"))

    assert (await codec.verify(token)).execution_id == "exec-1"


# Weak secrets.


async def test_a_weak_secret_works_without_warning_the_caller() -> None:
    codec = make_codec(keys=[SigningKey(kid=None, secret="short")])
    principal = Principal(execution_id="e", user_id="u")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verified = await codec.verify(codec.issue(principal, ttl_seconds=60))

    assert verified.execution_id == "e"
    assert caught == []


async def test_a_weak_secret_leaves_the_callers_warning_filters_as_they_were() -> None:
    codec = make_codec(keys=[SigningKey(kid=None, secret="short")])
    token = codec.issue(Principal(execution_id="e", user_id="u"), ttl_seconds=60)

    with warnings.catch_warnings():
        warnings.simplefilter("error", jwt.InsecureKeyLengthWarning)
        filters = list(warnings.filters)
        await codec.verify(token)

        assert warnings.filters == filters
        with pytest.warns(jwt.InsecureKeyLengthWarning):
            jwt.encode({}, "short", algorithm="HS256")
