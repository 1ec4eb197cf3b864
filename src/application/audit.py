from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from application.ports import AuditLog, Clock
from domain.audit import (
    OUTCOME_OK,
    OUTCOME_PENDING,
    STATE_CHANGING_ACTIONS,
    AuditAction,
    AuditDetails,
    AuditEvent,
    ValueHasher,
    whole_milliseconds,
)
from domain.errors import DomainError
from domain.ids import uuid4_text
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
    - With `fail_closed` (`audit.failClosed`), a state-changing operation first persists an
      intent (outcome `pending`) in the outbox; when the outbox refuses it, the operation is
      not performed and `AuditUnavailableError` propagates. The outcome event that follows
      names the intent in `intent_id`. An intent without an outcome is an operation that may
      or may not have been performed: the process died, or the request was cancelled.
    """

    def __init__(
        self, *, log: AuditLog, clock: Clock, key: bytes, fail_closed: bool = False
    ) -> None:
        self._log = log
        self._clock = clock
        self._hmac = ValueHasher(key)
        self._fail_closed = fail_closed

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

        def details(outcome: str, value: Any, intent_id: str | None) -> AuditDetails:
            return AuditDetails(
                outcome=outcome,
                user_id=principal.user_id,
                event_id=principal.event_id,
                job_id=principal.job_id,
                request_id=context.request_id,
                client_address=context.client_address,
                key=key,
                tool=tool,
                tool_action=tool_action,
                value_hmac=None if value is _NO_VALUE else self._hmac(value),
                intent_id=intent_id,
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

        def details(outcome: str, value: Any, intent_id: str | None) -> AuditDetails:
            return AuditDetails(
                outcome=outcome,
                request_id=request_id,
                client_address=client_address,
                value_hmac=None if value is _NO_VALUE else self._hmac(value),
                intent_id=intent_id,
            )

        async with self._recorded(execution_id, action, details) as operation:
            yield operation

    @asynccontextmanager
    async def _recorded(
        self,
        execution_id: str | None,
        action: AuditAction,
        details: Callable[[str, Any, str | None], AuditDetails],
    ) -> AsyncIterator[AuditedOperation]:
        """The intent (under failClosed, for a state-changing action), then the operation,
        then its outcome event, whatever ended it."""
        intent_id = None
        if self._fail_closed and action in STATE_CHANGING_ACTIONS:
            intent = self._event(execution_id, action, details(OUTCOME_PENDING, _NO_VALUE, None))
            await self._log.record_or_refuse(intent)
            intent_id = intent.id
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
                self._event(
                    execution_id, action, details(operation.outcome, operation.value, intent_id)
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
        await self._log.record(self._event(execution_id, AuditAction.AUTH_DENIED, details))

    async def rate_limited(self, context: RequestContext, count: int) -> None:
        """Record that the rate limit refused `count` of the execution's requests in one
        minute; `context` is the minute's first refused request."""
        principal = context.principal
        details = AuditDetails(
            outcome="RATE_LIMITED",
            user_id=principal.user_id,
            event_id=principal.event_id,
            job_id=principal.job_id,
            request_id=context.request_id,
            client_address=context.client_address,
            count=count,
        )
        await self._log.record(
            self._event(principal.execution_id, AuditAction.RATE_LIMITED, details)
        )

    def _event(
        self, execution_id: str | None, action: AuditAction, details: AuditDetails
    ) -> AuditEvent:
        return AuditEvent(
            id=uuid4_text(),
            execution_id=execution_id,
            action=action,
            timestamp=whole_milliseconds(self._clock.now()),
            details=details,
        )
