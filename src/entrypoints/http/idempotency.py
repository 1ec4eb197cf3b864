"""`Idempotency-Key` on tool actions and output (SPEC section 4, "Idempotency (beyond)").

A repeat of a request, under the same key, by the same execution, on the same route, with a
body that is equal JSON (the canonical form of SPEC section 9), is answered with the first
answer instead of running again.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from loguru import logger

from application.ports import IdempotencyStore
from domain.audit import canonical_json
from domain.errors import IdempotencyConflictError, InvalidInputError
from domain.model import Principal, StoredAnswer

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"idempotency-key"
REPLAYED_HEADER = (b"idempotency-replayed", b"true")
MAX_KEY_LENGTH = 255

# The routes that honour the header, by method and Litestar's path template, each with the
# name its keys are scoped under.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/tool-actions/execute"): "tool-actions/execute",
    ("POST", "/executions/{execution_id}/output"): "executions/output",
}
# The answer's own fields that a replay repeats. Content-Length is recomputed; X-Request-ID
# and the RateLimit fields are added by the outer layers for the current request.
KEPT_HEADERS = frozenset({"content-type"})


def idempotency_key(scope: Scope) -> str | None:
    """The request's Idempotency-Key, None without one; `InvalidInputError` when it is not
    1 to 255 printable ASCII characters or comes more than once."""
    values = [value for name, value in scope["headers"] if name == HEADER]
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInputError("send at most one Idempotency-Key header")
    key = values[0].decode("latin-1")
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidInputError(
            f"the Idempotency-Key header has {len(key)} characters;"
            f" send 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    if any(not 0x20 <= ord(ch) <= 0x7E for ch in key):
        raise InvalidInputError(
            "the Idempotency-Key header must be printable ASCII characters only"
        )
    return key


def request_hash(body: bytes) -> str:
    """SHA-256 of the body's canonical JSON, so that equal JSON is the same request; a body
    that is not JSON (which the body check refuses anyway) is hashed as it came."""
    try:
        material = b"json:" + canonical_json(json.loads(body))
    except (ValueError, RecursionError):
        material = b"raw:" + body
    return hashlib.sha256(material).hexdigest()


class IdempotencyMiddleware(ASGIMiddleware):
    """Keeps the answers of `ROUTES` under their `Idempotency-Key` in `store` for `ttl`
    seconds: 2xx and 4xx answers are kept and replayed (with `Idempotency-Replayed: true`),
    5xx answers and exceptions release the key so that a repeat runs again. A repeat with
    another body, or while the first still runs, raises `IdempotencyConflictError` (409).

    Keys are scoped by the authenticated execution (`scope["user"]`) and the route, so this
    must come after `ScriptAuthMiddleware` in the app's middleware list. App-level, like the
    authentication middleware: a Router would be deep-copied, and so would the store.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, store: IdempotencyStore, ttl: float) -> None:
        self._store = store
        self._ttl = ttl

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        method = str(scope.get("method", ""))
        route = ROUTES.get((method, scope.get("path_template", "")))
        key = idempotency_key(scope) if route is not None else None
        if route is None or key is None:
            await next_app(scope, receive, send)
            return
        principal = scope.get("user")
        if not isinstance(principal, Principal):
            raise RuntimeError("IdempotencyMiddleware must come after ScriptAuthMiddleware")
        # Litestar keeps the body in the scope: the handler reads it again from there.
        body = await Request[Any, Any, Any](scope, receive).body()
        fingerprint = request_hash(body)
        record_scope = f"{principal.execution_id}:{route}"
        found = await self._store.begin(record_scope, key, fingerprint, self._ttl)
        if found is not None:
            if found.request_hash != fingerprint:
                raise IdempotencyConflictError(
                    "this Idempotency-Key was already used for a request with another body;"
                    " use a new key for a new request"
                )
            if found.answer is None:
                raise IdempotencyConflictError(
                    "the first request with this Idempotency-Key is still running;"
                    " repeat it once that one has answered"
                )
            await _replay(found.answer, send)
            return
        await self._run(record_scope, key, scope, receive, send, next_app=next_app)

    async def _run(
        self,
        record_scope: str,
        key: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        next_app: ASGIApp,
    ) -> None:
        status = 0
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        settled = False

        async def capture(message: Message) -> None:
            nonlocal status, settled
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.extend(
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in message.get("headers", ())
                    if name.decode("latin-1").lower() in KEPT_HEADERS
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and not settled:
                    # Kept before the last byte goes out: a repeat sent as soon as the client
                    # has the answer finds it.
                    settled = True
                    await self._settle(record_scope, key, status, headers, b"".join(chunks))
            await send(message)

        try:
            await next_app(scope, receive, capture)
        except BaseException:
            if not settled:
                settled = True
                await self._release(record_scope, key)
            raise
        if not settled:  # the app answered nothing, or never finished its body
            await self._release(record_scope, key)

    async def _settle(
        self, record_scope: str, key: str, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        if not 200 <= status < 500:
            await self._release(record_scope, key)
            return
        answer = StoredAnswer(status=status, headers=headers, body=body)
        try:
            await self._store.complete(record_scope, key, answer, self._ttl)
        except Exception as error:
            # The request has run: its answer goes out even if it cannot be kept. A repeat
            # finds the claim running (409) until it expires.
            logger.warning(
                "idempotency: the answer for key {} of {} was not kept: {}",
                key,
                record_scope,
                error,
            )

    async def _release(self, record_scope: str, key: str) -> None:
        try:
            await self._store.abandon(record_scope, key)
        except Exception as error:
            logger.warning(
                "idempotency: the claim on key {} of {} was not released: {}",
                key,
                record_scope,
                error,
            )


async def _replay(answer: StoredAnswer, send: Send) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    headers.append(REPLAYED_HEADER)
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})
