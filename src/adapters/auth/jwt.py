from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jwt
import msgspec

from application.ports import TokenIssuer, TokenVerifier
from domain.errors import TokenExpiredError, TokenInvalidError
from domain.model import Principal

if TYPE_CHECKING:
    from jwt.types import Options

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "executionId", "userId")
# pyjwt warns about HMAC keys shorter than the hash's digest: 32 bytes for SHA-256.
_MIN_SECRET_BYTES = 32


class SigningKey(msgspec.Struct, frozen=True):
    """An HS256 secret and the key id tokens name it by (`None`: tokens name no key)."""

    kid: str | None
    secret: str


class JwtTokenCodec(TokenVerifier, TokenIssuer):
    """Verifies execution tokens and mints the runtime's own.

    - HS256 only: `none` and every other algorithm is refused before any key is tried.
    - `exp`, `executionId` and `userId` are required; `nbf` and `iat` are checked when present;
      each time check allows `leeway` seconds of clock skew.
    - `iss` is checked only when `issuers` is set, `aud` only when `audience` is set.
    - A token naming a `kid` is checked against that key alone; one naming none, against each.
    - Ids may be strings or integers (older orchestrators); `jobId` falls back to `job_id`.
    """

    def __init__(
        self,
        *,
        keys: Sequence[SigningKey],
        leeway: float = 30.0,
        issuers: Sequence[str] = (),
        audience: Sequence[str] = (),
        issuer: str = "cronium-runtime",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("JwtTokenCodec needs at least one signing key")
        if any(not key.secret for key in keys):
            raise ValueError("a signing key has an empty secret")
        kids = [key.kid for key in keys if key.kid is not None]
        if len(kids) != len(set(kids)):
            raise ValueError("two signing keys have the same kid")
        self._keys = tuple(keys)
        self._keys_by_kid = {key.kid: key for key in keys if key.kid is not None}
        self._leeway = leeway
        self._issuers = list(issuers) or None
        self._audience = list(audience) or None
        self._issuer = issuer
        self._clock = clock
        self._has_weak_key = any(len(key.secret.encode()) < _MIN_SECRET_BYTES for key in keys)
        # The time claims are checked here against the injected clock, not by pyjwt, which
        # reads the system clock itself. `sub` and `jti` are not ours to judge: an older
        # orchestrator may send a numeric `sub`.
        self._options: Options = {
            "require": list(REQUIRED_CLAIMS),
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": self._audience is not None,
            "verify_sub": False,
            "verify_jti": False,
        }

    async def verify(self, token: str) -> Principal:
        claims = self._decode(token)
        expires_at = self._check_times(claims, now=self._clock())
        return Principal(
            execution_id=_required_id(claims, "executionId"),
            user_id=_required_id(claims, "userId"),
            event_id=_optional_id(claims, "eventId"),
            job_id=_optional_id(claims, "jobId") or _optional_id(claims, "job_id"),
            expires_at=expires_at,
        )

    def issue(self, principal: Principal, ttl_seconds: float) -> str:
        if ttl_seconds <= 0:
            raise ValueError("a token's lifetime must be positive")
        now = self._clock()
        claims: dict[str, Any] = {
            "executionId": principal.execution_id,
            "userId": principal.user_id,
            "scope": "execution",
            "sub": principal.execution_id,
            "iss": self._issuer,
            "iat": math.floor(now),
            "nbf": math.floor(now),
            "exp": math.floor(now + ttl_seconds),
        }
        if principal.event_id is not None:
            claims["eventId"] = principal.event_id
        if principal.job_id is not None:
            claims["jobId"] = principal.job_id
        # A token this service mints must pass this service's own audience check.
        if self._audience is not None:
            claims["aud"] = self._audience[0] if len(self._audience) == 1 else self._audience
        key = self._keys[0]
        headers = {"kid": key.kid} if key.kid is not None else None
        with self._quiet():
            try:
                return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers=headers)
            except jwt.PyJWTError:
                raise ValueError("the first signing key cannot sign HS256 tokens") from None

    def _decode(self, token: str) -> dict[str, Any]:
        with self._quiet():
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError as error:
                raise _translate(error) from None
            _check_algorithm(header)
            for key in self._candidate_keys(header):
                try:
                    return jwt.decode(
                        token,
                        key.secret,
                        algorithms=[ALGORITHM],
                        options=self._options,
                        issuer=self._issuers,
                        audience=self._audience,
                    )
                except jwt.InvalidSignatureError:
                    continue
                except jwt.PyJWTError as error:
                    raise _translate(error) from None
        raise TokenInvalidError("the token's signature does not match any configured key")

    def _candidate_keys(self, header: Mapping[str, Any]) -> Sequence[SigningKey]:
        kid = header.get("kid")
        if kid is None:
            return self._keys
        if not isinstance(kid, str) or kid not in self._keys_by_kid:
            raise TokenInvalidError("the token names an unknown key id (kid)")
        return (self._keys_by_kid[kid],)

    def _check_times(self, claims: Mapping[str, Any], *, now: float) -> int:
        """The token's `exp`, once `exp`, `nbf` and `iat` agree with `now`."""
        expires_at = _numeric_date(claims["exp"], "exp")
        if expires_at <= now - self._leeway:
            raise TokenExpiredError()
        not_before = claims.get("nbf")
        if not_before is not None and _numeric_date(not_before, "nbf") > now + self._leeway:
            raise TokenInvalidError("the token is not valid yet (its nbf is in the future)")
        issued_at = claims.get("iat")
        if issued_at is not None and _numeric_date(issued_at, "iat") > now + self._leeway:
            raise TokenInvalidError(
                "the token was issued in the future (its iat); check the issuer's clock"
            )
        return math.floor(expires_at)

    def _quiet(self) -> contextlib.AbstractContextManager[None]:
        # Weak secrets pass settings only with `auth.allowWeakSecret`, which already logs a
        # warning at start-up; pyjwt's per-call warning would repeat it on every request.
        # Filters are touched only then: changing them resets every module's warning registry.
        if self._has_weak_key:
            return warnings.catch_warnings(action="ignore", category=jwt.InsecureKeyLengthWarning)
        return contextlib.nullcontext()


def _check_algorithm(header: Mapping[str, Any]) -> None:
    algorithm = header.get("alg")
    if algorithm == ALGORITHM:
        return
    # Name the algorithm only when it looks like one: the header is the caller's text.
    if isinstance(algorithm, str) and algorithm.isalnum() and len(algorithm) <= 16:
        raise TokenInvalidError(f"the token is signed with {algorithm!r}; only HS256 is accepted")
    raise TokenInvalidError("the token's algorithm is not HS256; only HS256 is accepted")


def _translate(error: jwt.PyJWTError) -> TokenInvalidError:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return TokenInvalidError(f"the token lacks the required claim {error.claim!r}")
    if isinstance(error, jwt.InvalidIssuerError):
        return TokenInvalidError("the token's issuer (iss) is not one this service accepts")
    if isinstance(error, jwt.InvalidAudienceError):
        return TokenInvalidError("the token's audience (aud) is not this service")
    if isinstance(error, jwt.DecodeError):
        return TokenInvalidError("the token is not a well-formed JWT")
    return TokenInvalidError("the token is not valid")


def _numeric_date(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenInvalidError(f"the token's claim {name!r} must be a number of seconds")
    return value


def _optional_id(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TokenInvalidError(f"the token's claim {name!r} must be a string")
    # A Go orchestrator sends "" for an id it does not have; that is the same as no id.
    return str(value) or None


def _required_id(claims: Mapping[str, Any], name: str) -> str:
    value = _optional_id(claims, name)
    if value is None:
        raise TokenInvalidError(f"the token's claim {name!r} is empty")
    return value
