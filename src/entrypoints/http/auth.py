"""The door for scripts: who is asking (the execution token) and how often (the rate limit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.middleware import ASGIMiddleware

from application.ports import RateLimiter, TokenVerifier
from domain.errors import RateLimitedError, TokenInvalidError, TokenMissingError
from domain.model import Principal, RequestContext
from entrypoints.http.errors import rate_limit_headers

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ASGIApp, Message, Receive, Scope, Send


class ScriptAuthMiddleware(ASGIMiddleware):
    """Authenticates the bearer token, then takes one request from the execution's bucket.

    Every answer after authentication carries the RateLimit fields of SPEC section 4; a
    refusal raises `RateLimitedError`, whose answer the error table gives the same fields.
    """

    def __init__(self, verifier: TokenVerifier, limiter: RateLimiter) -> None:
        self._verifier = verifier
        self._limiter = limiter

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        principal = await self._verifier.verify(bearer_token(scope))
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
