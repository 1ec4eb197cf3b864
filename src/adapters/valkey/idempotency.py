"""Idempotency-Key records in Valkey, shared by every replica (SPEC section 4)."""

from __future__ import annotations

from typing import Any

import msgspec

from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from application.ports import IdempotencyStore
from domain.errors import BackendUnavailableError
from domain.model import IdempotencyRecord, StoredAnswer

# Claim the key for a request if nothing holds it: a hash whose `hash` field is the
# request's fingerprint and whose `status` is missing while the request runs. Returns nil
# when the caller now owns the key, else {hash, status, headers, body} (status, headers and
# body nil while the first request is still running).
_BEGIN = """
local found = redis.call('HMGET', KEYS[1], 'hash', 'status', 'headers', 'body')
if found[1] then return found end
redis.call('HSET', KEYS[1], 'hash', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return false
"""
# Keep the answer, only while the claim still exists: an abandoned or expired claim is not
# brought back (a repeat may already be running under a claim of its own).
_COMPLETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'headers', ARGV[2], 'body', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

DEFAULT_RUNNING_TTL = 300.0


class IdempotencyUnavailableError(BackendUnavailableError):
    """Valkey did not answer and no local store may stand in: 503, which the helpers retry;
    nothing was run, so the retry can do no harm."""

    default_message = "the Idempotency-Key records cannot be reached; retry shortly"


class ValkeyIdempotencyStore(IdempotencyStore):
    """One hash per key, `<prefix>idem:{<scope>}:<key>`, expiring with the record.

    A claim (`begin`, one script) lives `min(ttl, running_ttl)`: if this process dies, or
    Valkey cannot be told the answer, a repeat is refused with 409 only for `running_ttl`,
    not for the whole `ttl`. `complete` keeps the answer for `ttl`; `abandon` deletes.

    Valkey unreachable (it failed, or the shared `ValkeyGate` is pausing after a failure):

    - with a `fallback` (the recommended wiring: the local SQLite store, shared by the
      processes of one machine), claims go there until Valkey answers again, and the same
      key's `complete` or `abandon` follows its claim. The trade-off, accepted because a
      503 on every tool call and output for the length of an outage is worse: the fallback
      cannot see records kept in Valkey, so a repeat that crosses the outage's boundary
      (first attempt in Valkey, repeat in the fallback, or the reverse, or a repeat landing
      on another machine's replica) runs again instead of being replayed;
    - without one, `begin` raises `IdempotencyUnavailableError` (503 BACKEND_UNAVAILABLE):
      nothing ran, the helpers retry, and no request ever runs twice because of an outage.
    """

    def __init__(
        self,
        *,
        client: ValkeyClient,
        gate: ValkeyGate,
        fallback: IdempotencyStore | None = None,
        running_ttl: float = DEFAULT_RUNNING_TTL,
        prefix: str = "cronium:",
    ) -> None:
        self._client = client
        self._gate = gate
        self._fallback = fallback
        self._running_ttl = running_ttl
        self._prefix = prefix
        self._begin = client.register_script(_BEGIN)  # type: ignore[misc]
        self._complete = client.register_script(_COMPLETE)  # type: ignore[misc]
        self._headers = msgspec.json.Encoder()
        # Claims this process made in the fallback, whose answer must go there too.
        self._in_fallback: set[tuple[str, str]] = set()

    def record_key(self, scope: str, key: str) -> str:
        # The whole scope is the hash tag: one execution's keys of one route share a slot.
        return f"{self._prefix}idem:{{{scope}}}:{key}"

    async def begin(
        self, scope: str, key: str, request_hash: str, ttl: float
    ) -> IdempotencyRecord | None:
        if not self._gate.open:
            self._gate.fell_back("idempotency")
            return await self._fallback_begin(scope, key, request_hash, ttl)
        claim_ms = max(1, round(min(ttl, self._running_ttl) * 1000))
        try:
            found = await self._begin(
                keys=[self.record_key(scope, key)], args=[request_hash, claim_ms]
            )
        except UNAVAILABLE as error:
            self._gate.failed("idempotency", error)
            return await self._fallback_begin(scope, key, request_hash, ttl)
        self._gate.succeeded()
        self._in_fallback.discard((scope, key))
        return None if found is None else _record(found)

    async def complete(self, scope: str, key: str, answer: StoredAnswer, ttl: float) -> None:
        if (scope, key) in self._in_fallback and self._fallback is not None:
            self._in_fallback.discard((scope, key))
            await self._fallback.complete(scope, key, answer, ttl)
            return
        headers = self._headers.encode([list(pair) for pair in answer.headers])
        try:
            await self._complete(
                keys=[self.record_key(scope, key)],
                args=[answer.status, headers, answer.body, max(1, round(ttl * 1000))],
            )
        except UNAVAILABLE as error:
            # The claim stays 'running' until running_ttl: repeats get 409, then run again.
            self._gate.mark_down(error)
            return
        self._gate.succeeded()

    async def abandon(self, scope: str, key: str) -> None:
        if (scope, key) in self._in_fallback and self._fallback is not None:
            self._in_fallback.discard((scope, key))
            await self._fallback.abandon(scope, key)
            return
        try:
            await self._client.delete(self.record_key(scope, key))
        except UNAVAILABLE as error:
            self._gate.mark_down(error)
            return
        self._gate.succeeded()

    async def _fallback_begin(
        self, scope: str, key: str, request_hash: str, ttl: float
    ) -> IdempotencyRecord | None:
        if self._fallback is None:
            raise IdempotencyUnavailableError()
        found = await self._fallback.begin(scope, key, request_hash, ttl)
        if found is None:
            self._in_fallback.add((scope, key))
        return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(found: list[Any]) -> IdempotencyRecord:
    request_hash, status, headers, body = found
    if status is None:
        return IdempotencyRecord(request_hash=_text(request_hash))
    pairs = msgspec.json.decode(headers) if headers else []
    answer = StoredAnswer(
        status=int(status),
        headers=[(str(name), str(value)) for name, value in pairs],
        body=body if isinstance(body, bytes) else _text(body or "").encode(),
    )
    return IdempotencyRecord(request_hash=_text(request_hash), answer=answer)
