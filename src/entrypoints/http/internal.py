"""The internal API (SPEC section 2): for the service's peers, never for scripts.

Its routes exist only when an internal token is configured (`auth.internalToken`, else the
backend token): without one, every `/internal/*` path is an unknown route, 404 NOT_FOUND.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.middleware import ASGIMiddleware

from application.audit import AuditRecorder
from application.revoke_execution import RevokeExecution, RevokeExecutionCommand
from domain.errors import AuthenticationError, TokenInvalidError
from entrypoints.http.auth import INTERNAL_PREFIX, FailureCounter, bearer_token, refused
from entrypoints.http.openapi import ANY_REQUEST, INTERNAL_SCHEME, WITH_BODY, documented
from entrypoints.http.routes import ExecutionId
from entrypoints.http.schemas import Ack

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send


def _not_internal(scope: Scope) -> bool:
    path: str = scope["path"]
    return not path.startswith(INTERNAL_PREFIX)


class InternalAuthMiddleware(ASGIMiddleware):
    """Lets through the `/internal/*` requests that carry `Authorization: Bearer <token>`.

    Compared in constant time, and as SHA-256 digests, so that neither the token's content
    nor its length can be learnt from how long a refusal takes. A refusal is 401
    (TOKEN_MISSING or TOKEN_INVALID), counted by its code and audited as `auth_denied`.
    """

    should_bypass_for_scope = staticmethod(_not_internal)

    def __init__(
        self,
        token: str,
        audit: AuditRecorder,
        on_failure: FailureCounter = lambda code: None,
    ) -> None:
        if not token:
            raise ValueError("the internal token is empty")
        self._digest = hashlib.sha256(token.encode()).digest()
        self._audit = audit
        self._on_failure = on_failure

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        try:
            presented = bearer_token(scope, credential="the internal token (auth.internalToken)")
            digest = hashlib.sha256(presented.encode()).digest()
            if not hmac.compare_digest(digest, self._digest):
                raise TokenInvalidError("the internal token is not valid")
        except AuthenticationError as error:
            await refused(scope, error, self._audit, self._on_failure)
            raise
        await next_app(scope, receive, send)


@post(
    "/internal/executions/{execution_id:str}/revoke",
    status_code=200,
    tags=["internal"],
    security=[{INTERNAL_SCHEME: []}],
    operation_class=documented(*ANY_REQUEST, *WITH_BODY, 401, 503),
    summary="Revoke an execution's tokens",
    description=(
        "The execution is over: its tokens are refused (401 TOKEN_REVOKED) on every replica"
        " until they expire. Revoking again is no error."
    ),
)
async def revoke_execution(
    request: Request[Any, Any, Any],
    execution_id: ExecutionId,
    revoke_execution: NamedDependency[RevokeExecution],
) -> Ack:
    client = request.client
    command = RevokeExecutionCommand(
        execution_id=execution_id,
        request_id=request.scope["state"]["request_id"],
        client_address=client.host if client else None,
    )
    await revoke_execution.execute(command)
    return Ack()


INTERNAL_ROUTES = [revoke_execution]
