"""The `backend` audit sink: `POST /api/internal/audit`, one event per call (SPEC section 5)."""

from __future__ import annotations

from loguru import logger

from adapters.backend_http.client import BackendStatusError, HttpBackendClient
from adapters.request_context import CURRENT_REQUEST_ID
from application.ports import AuditSinkRejectedError, AuditSinkUnavailableError, WireAuditSink
from domain.audit import AuditEvent, encode_event
from domain.errors import BackendAuthFailedError, BackendError, BackendUnavailableError

AUDIT_PATH = "/api/internal/audit"
# 4xx answers that say "not now" rather than "not this event".
_TRY_AGAIN_LATER = {408, 429}


class BackendAuditSink(WireAuditSink):
    """Delivers through the process's `HttpBackendClient`: its deadline, retries (an audit
    POST is idempotent: the backend keeps one copy per `id`) and circuit breaker.

    - 5xx, timeouts, connection errors, an open breaker: unavailable, delivered again later.
    - 401/403: unavailable too. The service token is wrong, which is a configuration problem
      and not the event's fault; the events wait until the token is fixed.
    - Any other 4xx (404 included): rejected, since the backend refuses this event itself.

    The body is the event's wire form as the outbox holds it, posted as it is.
    """

    name = "backend"

    def __init__(self, client: HttpBackendClient) -> None:
        self._client = client
        self._token_refused = False

    async def deliver(self, event: AuditEvent) -> None:
        await self.deliver_wire(event, encode_event(event))

    async def deliver_wire(self, event: AuditEvent, wire: bytes) -> None:
        # The event's own request id, so the backend can match it with the script's calls.
        request_id = CURRENT_REQUEST_ID.set(event.details.request_id)
        try:
            status, body = await self._client.request(
                "audit", "POST", AUDIT_PATH, content=wire, idempotent=True
            )
        except BackendAuthFailedError as error:
            if not self._token_refused:
                self._token_refused = True
                logger.error(
                    "the Cronium backend refuses the service token (backend.token /"
                    " BACKEND_TOKEN): audit events wait in the outbox until it is fixed"
                )
            raise AuditSinkUnavailableError(str(error)) from error
        except BackendStatusError as error:
            if error.status in _TRY_AGAIN_LATER:
                raise AuditSinkUnavailableError(str(error)) from error
            raise AuditSinkRejectedError(str(error)) from error
        except (BackendUnavailableError, BackendError) as error:
            raise AuditSinkUnavailableError(str(error)) from error
        finally:
            CURRENT_REQUEST_ID.reset(request_id)
        if status == 404:
            detail = body.get("error") if isinstance(body, dict) else None
            raise AuditSinkRejectedError(
                f"the Cronium backend answered 404 to {AUDIT_PATH}"
                + (f": {detail}" if detail else "")
            )
        if self._token_refused:
            self._token_refused = False
            logger.info("the Cronium backend accepts the service token again")

    async def close(self) -> None:
        """Nothing to release: the client's session belongs to the container."""
