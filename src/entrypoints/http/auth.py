"""The door for scripts: who is asking (the execution token) and how often (the rate limit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.middleware import ASGIMiddleware

from application.audit import AuditRecorder
from application.ports import RateLimiter, TokenVerifier
from domain.errors import (
    AuthenticationError,
    RateLimitedError,
    TokenInvalidError,
    TokenMissingError,
)
from domain.model import Principal, RequestContext
from entrypoints.http.errors import rate_limit_headers

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ASGIApp, Message, Receive, Scope, Send


PUBLIC = "public"


def _is_api_document(scope: Scope) -> bool:
    return scope["path"].startswith("/schema")


class ScriptAuthMiddleware(ASGIMiddleware):
    """Authenticates the bearer token, then takes one request from the execution's bucket.

    Every answer after authentication carries the RateLimit fields of SPEC section 4; a
    refusal raises `RateLimitedError`, whose answer the error table gives the same fields.
    """

    # Open to anyone: the handlers marked `opt={PUBLIC: True}` and the OpenAPI documents.
    exclude_opt_key = PUBLIC
    should_bypass_for_scope = staticmethod(_is_api_document)

    def __init__(self, verifier: TokenVerifier, limiter: RateLimiter, audit: AuditRecorder) -> None:
        self._verifier = verifier
        self._limiter = limiter
        self._audit = audit

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        try:
            principal = await self._verifier.verify(bearer_token(scope))
        except AuthenticationError as error:
            client = scope.get("client")
            await self._audit.denied(
                execution_id=scope["path_params"].get("execution_id"),
                outcome=error.code,
                request_id=scope["state"]["request_id"],
                client_address=client[0] if client else None,
            )
            raise
        decision = await self._limiter.acquire(principal.execution_id)
        if not decision.allowed:
            raise RateLimitedError(limit=decision.limit, retry_after=decision.reset_after)
        scope["user"] = principal
        headers = [
            (name.lower().encode(), value.encode())
            for name, value in rate_limit_headers(
                decision.limit, decision.remaining, decision.reset_after
            ).items()
        ]

        async def send_with_rate_limit(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await next_app(scope, receive, send_with_rate_limit)


def bearer_token(scope: Scope) -> str:
    values = [value for name, value in scope["headers"] if name == b"authorization"]
    if not values:
        raise TokenMissingError()
    if len(values) > 1:
        raise TokenInvalidError("send exactly one Authorization header")
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenMissingError(
            "the Authorization header must be 'Bearer <token>' with the execution token"
        )
    return token.strip()


def provide_request_context(request: Request[Any, Any, Any]) -> RequestContext:
    principal: Principal = request.scope["user"]
    client = request.client
    return RequestContext(
        principal=principal,
        request_id=request.scope["state"]["request_id"],
        client_address=client.host if client else None,
    )
