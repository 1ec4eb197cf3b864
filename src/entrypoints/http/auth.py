"""The door for scripts: who is asking (the execution token) and how often (the rate limit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litestar.middleware import ASGIMiddleware

from application.audit import AuditRecorder
from application.ports import RateLimiter, RevocationList, TokenVerifier
from application.record_rate_limited import RecordRateLimited
from domain.errors import (
    AuthenticationError,
    RateLimitedError,
    TokenInvalidError,
    TokenMissingError,
    TokenRevokedError,
)
from domain.model import Principal, RequestContext
from entrypoints.http.errors import rate_limit_fields

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ASGIApp, Message, Receive, Scope, Send


PUBLIC = "public"
INTERNAL_PREFIX = "/internal/"

# Called with the code of every authentication failure, for the metric.
FailureCounter = Callable[[str], None]


def _not_for_scripts(scope: Scope) -> bool:
    """The OpenAPI documents (open to anyone) and the internal API (its own token)."""
    path: str = scope["path"]
    return path.startswith("/schema") or path.startswith(INTERNAL_PREFIX)


class ScriptAuthMiddleware(ASGIMiddleware):
    """Authenticates the bearer token, refuses a revoked execution's, then takes one request
    from the execution's bucket.

    The revocation list is asked on every request, after the verifier (whose answers may
    come from its cache), so a revocation applies at once. Every refusal is counted by its
    code (`on_failure`) and audited as `auth_denied`. Every answer after authentication
    carries the RateLimit fields of SPEC section 4; a rate-limit refusal is counted
    (`on_rate_limited`) and for the minute's `rate_limited` audit event, and raises
    `RateLimitedError`, whose answer the error table gives the same fields.
    """

    # Not for scripts: the handlers marked `opt={PUBLIC: True}`, the OpenAPI documents and
    # the internal API.
    exclude_opt_key = PUBLIC
    should_bypass_for_scope = staticmethod(_not_for_scripts)

    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        revocations: RevocationList,
        limiter: RateLimiter,
        audit: AuditRecorder,
        refusals: RecordRateLimited,
        on_failure: FailureCounter = lambda code: None,
        on_rate_limited: Callable[[], None] = lambda: None,
    ) -> None:
        self._verifier = verifier
        self._on_rate_limited = on_rate_limited
        self._revocations = revocations
        self._limiter = limiter
        self._audit = audit
        self._refusals = refusals
        self._on_failure = on_failure

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        try:
            principal = await self._verifier.verify(bearer_token(scope))
            if await self._revocations.is_revoked(principal.execution_id):
                raise TokenRevokedError()
        except AuthenticationError as error:
            await refused(scope, error, self._audit, self._on_failure)
            raise
        decision = await self._limiter.acquire(principal.execution_id)
        if not decision.allowed:
            self._on_rate_limited()
            client = scope.get("client")
            await self._refusals.refused(
                RequestContext(
                    principal=principal,
                    request_id=scope["state"]["request_id"],
                    client_address=client[0] if client else None,
                )
            )
            raise RateLimitedError(limit=decision.limit, retry_after=decision.reset_after)
        scope["user"] = principal
        headers = rate_limit_fields(decision.limit, decision.remaining, decision.reset_after)

        async def send_with_rate_limit(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await next_app(scope, receive, send_with_rate_limit)


async def refused(
    scope: Scope, error: AuthenticationError, audit: AuditRecorder, on_failure: FailureCounter
) -> None:
    """Count and audit a request refused at the door; the path's execution, no claims."""
    on_failure(error.code)
    client = scope.get("client")
    await audit.denied(
        execution_id=scope["path_params"].get("execution_id"),
        outcome=error.code,
        request_id=scope["state"]["request_id"],
        client_address=client[0] if client else None,
    )


def bearer_token(scope: Scope, credential: str = "the execution token") -> str:
    """The token of the one `Authorization: Bearer <token>` header; `credential` names what
    the caller should send, in the message of a refusal."""
    values = [value for name, value in scope["headers"] if name == b"authorization"]
    if not values:
        raise TokenMissingError(f"send {credential} as 'Authorization: Bearer <token>'")
    if len(values) > 1:
        raise TokenInvalidError("send exactly one Authorization header")
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenMissingError(
            f"the Authorization header must be 'Bearer <token>' with {credential}"
        )
    return token.strip()


def request_context(request: Request[Any, Any, Any]) -> RequestContext:
    """Who asks (set by `ScriptAuthMiddleware`), the request's id and the client's address.

    Built by the handler itself rather than given as a Litestar dependency: a handler with
    two dependencies or more has them resolved in an anyio task group, a task each, on every
    request, which cost more than everything else the handler does.
    """
    scope = request.scope
    principal: Principal = scope["user"]
    client = scope.get("client")
    return RequestContext(
        principal=principal,
        request_id=scope["state"]["request_id"],
        client_address=client[0] if client else None,
    )
