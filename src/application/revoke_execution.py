from __future__ import annotations

import msgspec

from application.audit import AuditRecorder
from application.ports import RevocationList
from domain.audit import AuditAction


class RevokeExecutionCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A peer of the service (the orchestrator) says an execution is over."""

    execution_id: str
    request_id: str
    client_address: str | None = None


class RevokeExecution:
    """Refuse an execution's tokens from now on, on every process, until they expire.

    - The revocation is kept `keep_for` seconds (`auth.maxTokenLifetime`): no token of the
      execution can outlive that, so nothing is forgotten while it could still be used.
    - Revoking twice is no error: the second only restarts the period.
    - One `revoke` audit event about the execution, on behalf of no user.
    """

    def __init__(
        self, *, revocations: RevocationList, audit: AuditRecorder, keep_for: float
    ) -> None:
        if keep_for <= 0:
            raise ValueError("a revocation must be kept for some time")
        self._revocations = revocations
        self._audit = audit
        self._keep_for = keep_for

    async def execute(self, command: RevokeExecutionCommand) -> None:
        async with self._audit.service_operation(
            execution_id=command.execution_id,
            action=AuditAction.REVOKE,
            request_id=command.request_id,
            client_address=command.client_address,
        ):
            await self._revocations.revoke(command.execution_id, self._keep_for)
