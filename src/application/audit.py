from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from application.ports import AuditLog, Clock
from domain.audit import OUTCOME_OK, AuditAction, AuditDetails, AuditEvent, value_hmac
from domain.errors import DomainError
from domain.model import RequestContext

_NO_VALUE = object()


class AuditedOperation:
    """What a use case tells the trail about the operation in progress."""

    def __init__(self) -> None:
        self.value: Any = _NO_VALUE
        self.outcome: str = OUTCOME_OK


class AuditRecorder:
    """Records one event per operation, whatever its outcome.

    - The outcome is `ok`, the code of the domain error that ended the operation,
      `CANCELLED` when the task was cancelled, or `INTERNAL` for anything else; the error
      still propagates.
    - The value that moved is recorded only as its HMAC under the audit key.
    """

    def __init__(self, *, log: AuditLog, clock: Clock, key: bytes) -> None:
        self._log = log
        self._clock = clock
        self._key = key

    @asynccontextmanager
    async def operation(
        self,
        context: RequestContext,
        action: AuditAction,
        *,
        key: str | None = None,
        tool: str | None = None,
        tool_action: str | None = None,
    ) -> AsyncIterator[AuditedOperation]:
        principal = context.principal

        def details(operation: AuditedOperation) -> AuditDetails:
            fingerprint = (
                None if operation.value is _NO_VALUE else value_hmac(self._key, operation.value)
            )
            return AuditDetails(
                outcome=operation.outcome,
                user_id=principal.user_id,
                event_id=principal.event_id,
                job_id=principal.job_id,
                request_id=context.request_id,
                client_address=context.client_address,
                key=key,
                tool=tool,
                tool_action=tool_action,
                value_hmac=fingerprint,
            )

        async with self._recorded(principal.execution_id, action, details) as operation:
            yield operation

    @asynccontextmanager
    async def service_operation(
        self,
        *,
        execution_id: str,
        action: AuditAction,
        request_id: str,
        client_address: str | None,
    ) -> AsyncIterator[AuditedOperation]:
        """An operation the service's peers ask for (the internal API), about an execution
        and on behalf of no user: the event carries no claims."""

        def details(operation: AuditedOperation) -> AuditDetails:
            return AuditDetails(
                outcome=operation.outcome, request_id=request_id, client_address=client_address
            )

        async with self._recorded(execution_id, action, details) as operation:
            yield operation

    @asynccontextmanager
    async def _recorded(
        self,
        execution_id: str,
        action: AuditAction,
        details: Callable[[AuditedOperation], AuditDetails],
    ) -> AsyncIterator[AuditedOperation]:
        operation = AuditedOperation()
        try:
            yield operation
        except DomainError as error:
            operation.outcome = error.code
            raise
        except Exception:
            operation.outcome = "INTERNAL"
            raise
        except BaseException:  # cancelled: the client left or the deadline ran out
            operation.outcome = "CANCELLED"
            raise
        finally:
            await self._log.record(
                AuditEvent(
                    id=str(uuid.uuid4()),
                    execution_id=execution_id,
                    action=action,
                    timestamp=self._clock.now(),
                    details=details(operation),
                )
            )

    async def denied(
        self,
        *,
        execution_id: str | None,
        outcome: str,
        request_id: str,
        client_address: str | None,
    ) -> None:
        """Record a request refused before anyone was known: no claims, the path's execution."""
        details = AuditDetails(
            outcome=outcome, request_id=request_id, client_address=client_address
        )
        await self._log.record(
            AuditEvent(
                id=str(uuid.uuid4()),
                execution_id=execution_id,
                action=AuditAction.AUTH_DENIED,
                timestamp=self._clock.now(),
                details=details,
            )
        )
