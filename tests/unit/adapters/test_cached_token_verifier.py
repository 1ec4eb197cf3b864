"""The verified-token cache in front of the real codec, on a clock the test moves."""

from __future__ import annotations

import jwt
import pytest

from adapters.auth.cache import CachedTokenVerifier
from adapters.auth.jwt import JwtTokenCodec, SigningKey
from application.ports import TokenVerifier
from domain.errors import TokenExpiredError, TokenInvalidError
from domain.model import Principal

NOW = 1_800_000_000.0
SECRET = "c" * 40
LEEWAY = 30.0


class MovableClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class CountingVerifier(TokenVerifier):
    """Counts the tokens handed to the codec it wraps."""

    def __init__(self, inner: TokenVerifier) -> None:
        self.inner = inner
        self.calls = 0

    async def verify(self, token: str) -> Principal:
        self.calls += 1
        return await self.inner.verify(token)


class PrincipalsWithoutExpiry(TokenVerifier):
    async def verify(self, token: str) -> Principal:
        return Principal(execution_id=token, user_id="u")


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def codec(clock: MovableClock) -> CountingVerifier:
    keys = [SigningKey(kid=None, secret=SECRET)]
    return CountingVerifier(JwtTokenCodec(keys=keys, leeway=LEEWAY, clock=clock))


def token_for(execution_id: str, exp: float) -> str:
    claims = {"executionId": execution_id, "userId": "u", "iat": int(NOW), "exp": int(exp)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_a_token_seen_before_is_not_verified_again(
    codec: CountingVerifier, clock: MovableClock
) -> None:
    verifications: list[None] = []
    cache = CachedTokenVerifier(
        codec, clock=clock, on_verification=lambda: verifications.append(None)
    )
    token = token_for("e1", NOW + 3600)

    principals = [await cache.verify(token) for _ in range(100)]

    assert codec.calls == 1
    assert len(verifications) == 1
    assert {p.execution_id for p in principals} == {"e1"}


async def test_a_cached_token_goes_back_to_the_codec_at_its_exp_and_expires_on_time(
    codec: CountingVerifier, clock: MovableClock
) -> None:
    cache = CachedTokenVerifier(codec, clock=clock)
    token = token_for("e1", NOW + 60)
    await cache.verify(token)

    clock.now = NOW + 59.9
    await cache.verify(token)
    assert codec.calls == 1  # still served from the cache

    clock.now = NOW + 60 + LEEWAY - 1  # past exp, within the leeway: the codec still accepts
    assert (await cache.verify(token)).execution_id == "e1"
    assert codec.calls == 2

    clock.now = NOW + 60 + LEEWAY  # the moment the codec alone would refuse it
    with pytest.raises(TokenExpiredError):
        await cache.verify(token)
    with pytest.raises(TokenExpiredError):
        await cache.verify(token)


async def test_a_refused_token_is_not_cached_and_is_refused_every_time(
    codec: CountingVerifier, clock: MovableClock
) -> None:
    cache = CachedTokenVerifier(codec, clock=clock)
    forged = jwt.encode({"executionId": "e1", "userId": "u", "exp": int(NOW) + 60}, "f" * 40)

    for _ in range(3):
        with pytest.raises(TokenInvalidError):
            await cache.verify(forged)

    assert codec.calls == 3
    assert len(cache) == 0


async def test_a_token_not_valid_yet_is_accepted_once_its_nbf_has_come(
    codec: CountingVerifier, clock: MovableClock
) -> None:
    cache = CachedTokenVerifier(codec, clock=clock)
    claims = {"executionId": "e1", "userId": "u", "nbf": int(NOW) + 120, "exp": int(NOW) + 600}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(TokenInvalidError, match="not valid yet"):
        await cache.verify(token)

    clock.now = NOW + 120

    assert (await cache.verify(token)).execution_id == "e1"


async def test_the_cache_forgets_the_least_recently_used_token_beyond_its_size(
    codec: CountingVerifier, clock: MovableClock
) -> None:
    cache = CachedTokenVerifier(codec, clock=clock, max_entries=2)
    first, second, third = (token_for(f"e{n}", NOW + 3600) for n in (1, 2, 3))
    await cache.verify(first)
    await cache.verify(second)
    await cache.verify(first)  # the first is now the most recently used

    await cache.verify(third)  # pushes out the second
    assert len(cache) == 2
    calls = codec.calls
    await cache.verify(first)
    await cache.verify(third)
    assert codec.calls == calls
    await cache.verify(second)
    assert codec.calls == calls + 1


async def test_a_principal_without_an_expiry_is_never_cached() -> None:
    inner = CountingVerifier(PrincipalsWithoutExpiry())
    cache = CachedTokenVerifier(inner)

    await cache.verify("e1")
    await cache.verify("e1")

    assert inner.calls == 2


async def test_the_cache_keeps_digests_of_tokens_not_the_tokens(
    codec: CountingVerifier, clock: MovableClock
) -> None:
    cache = CachedTokenVerifier(codec, clock=clock)
    token = token_for("e1", NOW + 3600)

    await cache.verify(token)

    held = [key for key in vars(cache)["_entries"]]
    assert held and all(token.encode() not in key and len(key) == 32 for key in held)


def test_a_cache_of_no_entries_is_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CachedTokenVerifier(PrincipalsWithoutExpiry(), max_entries=0)
