"""The one HTTP client of the Cronium backend (SPEC section 5): auth, deadline, retries,
circuit breaker and metrics, shared by every backend repository of this process."""

from __future__ import annotations

import asyncio
import json as jsonlib
import random
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import prometheus_client
from yarl import URL

from adapters.request_context import CURRENT_REQUEST_ID
from domain.errors import BackendAuthFailedError, BackendError, BackendUnavailableError

CLOSED, HALF_OPEN, OPEN = 0, 1, 2


class ToolOutcomeUnknown(Exception):
    """A non-idempotent call was (or may have been) sent, then timed out, was reset, or was
    answered 5xx: it may or may not have run, and it must not be sent again."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BackendStatusError(BackendError):
    """A final 4xx from the backend (other than 401/403/404): its status and `error` text."""

    def __init__(self, status: int, backend_error: str | None) -> None:
        self.status = status
        self.backend_error = backend_error
        detail = f": {backend_error}" if backend_error else ""
        super().__init__(f"the Cronium backend answered {status}{detail}")


class _Attempt:
    """What one attempt came to; `sent` once a connection was handed to the request."""

    def __init__(self) -> None:
        self.sent = False


class _Call:
    """One call of `request`, across its attempts."""

    def __init__(
        self,
        *,
        operation: str,
        method: str,
        url: URL,
        headers: dict[str, str],
        payload: bytes | None,
        idempotent: bool,
        started: float,
    ) -> None:
        self.operation = operation
        self.method = method
        self.url = url
        self.headers = headers
        self.payload = payload
        self.idempotent = idempotent
        self.started = started
        self.sent = False


def _encode(body: Any) -> bytes:
    return jsonlib.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class _Metrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry | None) -> None:
        self.enabled = registry is not None
        if registry is None:
            return
        self.requests = prometheus_client.Counter(
            "cronium_runtime_backend_requests_total",
            "Calls to the Cronium backend by operation and outcome.",
            ["operation", "outcome"],
            registry=registry,
        )
        self.duration = prometheus_client.Histogram(
            "cronium_runtime_backend_request_duration_seconds",
            "Time of a call to the Cronium backend, retries included.",
            ["operation"],
            registry=registry,
        )
        # Each worker has a breaker of its own; across them the worst state of the running
        # ones is shown (0 < 1 < 2), so "open anywhere" reads 2.
        self.breaker = prometheus_client.Gauge(
            "cronium_runtime_backend_breaker_state",
            "The backend circuit breaker: 0 closed, 1 half-open, 2 open (the worst of the"
            " running workers').",
            registry=registry,
            multiprocess_mode="livemax",
        )

    def count(self, operation: str, outcome: str, seconds: float | None) -> None:
        if not self.enabled:
            return
        self.requests.labels(operation=operation, outcome=outcome).inc()
        if seconds is not None:
            self.duration.labels(operation=operation).observe(seconds)

    def state(self, value: int) -> None:
        if self.enabled:
            self.breaker.set(value)


class _Failure(Exception):
    """A retryable failure inside the loop: its metric outcome and what to tell the caller."""

    def __init__(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        self.message = message
        super().__init__(message)


class HttpBackendClient:
    """The Cronium backend over one `aiohttp.ClientSession` per process.

    `request` runs one call under one overall deadline (`timeout`), retrying 5xx answers and
    connection errors with full-jitter exponential backoff for reads and idempotent writes;
    a non-idempotent call is retried only when its connection failed before it was sent, and
    raises `ToolOutcomeUnknown` when it was sent and then failed. A circuit breaker opens
    after `breaker_failures` consecutive failed calls, for `breaker_cooldown` seconds, then
    lets one probe call through.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout: float,
        max_retries: int,
        retry_delay: float,
        breaker_failures: int,
        breaker_cooldown: float,
        connection_limit: int = 64,
        registry: prometheus_client.CollectorRegistry | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._max_retries = max(0, max_retries)
        self._retry_delay = retry_delay
        self._breaker_failures = max(1, breaker_failures)
        self._breaker_cooldown = breaker_cooldown
        self._connection_limit = connection_limit
        self._sleep = sleep
        self._clock = clock
        self._metrics = _Metrics(registry)
        self._bare_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._body_headers = {**self._bare_headers, "Content-Type": "application/json"}
        self._session: aiohttp.ClientSession | None = None
        self._state = CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._last_failure: tuple[str, float] | None = None
        self._metrics.state(CLOSED)

    # Lifecycle.

    async def open(self) -> None:
        if self._session is not None:
            return
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(_mark_sent)
        trace.on_connection_reuseconn.append(_mark_sent)
        trace.on_request_headers_sent.append(_mark_sent)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connection_limit),
            timeout=aiohttp.ClientTimeout(total=None),
            trace_configs=[trace],
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def session(self) -> aiohttp.ClientSession | None:
        return self._session

    # What the health probe reads.

    @property
    def breaker_state(self) -> int:
        """0 closed, 1 half-open, 2 open (an open breaker past its cool-down reads half-open)."""
        if self._state == OPEN and self._clock() - self._opened_at >= self._breaker_cooldown:
            return HALF_OPEN
        return self._state

    @property
    def breaker_cooldown(self) -> float:
        return self._breaker_cooldown

    @property
    def last_failure(self) -> tuple[str, float] | None:
        """The outcome ("unavailable", "timeout", "server_error") of the last failed call and
        when (on `clock`) it ended; None once a later call succeeded."""
        return self._last_failure

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    # The one call.

    async def request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        idempotent: bool,
    ) -> tuple[int, Any]:
        """Call `path` (already URL-encoded) and return `(status, parsed JSON or None)` for a
        2xx or a 404; raise for anything else (see the class docstring). The body is `json`
        encoded, or `content`, JSON the caller encoded already."""
        started = self._clock()
        self._enter_breaker(operation)
        finished = False
        try:
            payload = content if json is None else _encode(json)
            result = await self._call(
                operation, method, path, payload=payload, idempotent=idempotent, started=started
            )
            finished = True
            return result
        finally:
            if not finished and self._probe_in_flight:
                # Cancelled or an unexpected error while probing: let another call probe.
                self._probe_in_flight = False

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        payload: bytes | None,
        idempotent: bool,
        started: float,
    ) -> tuple[int, Any]:
        session = self._session
        if session is None:
            raise RuntimeError("HttpBackendClient.open() was not awaited")
        call = _Call(
            operation=operation,
            method=method,
            url=URL(self._base_url + path, encoded=True),
            headers=self._headers(payload is not None),
            payload=payload,
            idempotent=idempotent,
            started=started,
        )
        deadline = self._clock() + self._timeout
        failure: _Failure | None = None
        try:
            async with asyncio.timeout(self._timeout):
                attempt = 0
                while True:
                    outcome = await self._attempt(session, call)
                    if not isinstance(outcome, _Failure):
                        return outcome
                    failure = outcome
                    if attempt >= self._max_retries:
                        break
                    delay = random.uniform(0, self._retry_delay * 2**attempt)  # noqa: S311
                    if self._clock() + delay >= deadline:
                        break  # never back off past the deadline
                    await self._sleep(delay)
                    attempt += 1
        except TimeoutError:
            self._finish_failed(call, "timeout")
            message = f"the Cronium backend did not answer within {self._timeout:g}s"
            if not idempotent and call.sent:
                raise ToolOutcomeUnknown(message) from None
            raise BackendUnavailableError(message) from None
        assert failure is not None
        self._finish_failed(call, failure.outcome)
        if failure.outcome == "server_error":
            raise BackendError(failure.message)
        raise BackendUnavailableError(failure.message)

    def _headers(self, with_body: bool) -> dict[str, str]:
        # A copy of headers built once: a call adds its request id to its own.
        headers = (self._body_headers if with_body else self._bare_headers).copy()
        request_id = CURRENT_REQUEST_ID.get()
        if request_id:
            headers["X-Request-ID"] = request_id
        return headers

    async def _attempt(
        self, session: aiohttp.ClientSession, call: _Call
    ) -> tuple[int, Any] | _Failure:
        """One attempt: the answer, a retryable `_Failure`, or a raised final error."""
        attempt = _Attempt()
        try:
            async with session.request(
                call.method,
                call.url,
                headers=call.headers,
                data=call.payload,
                allow_redirects=False,
                trace_request_ctx=attempt,
            ) as response:
                status, raw = response.status, await response.read()
        except aiohttp.ClientConnectorError as error:
            return _Failure("unavailable", f"the Cronium backend cannot be reached: {error}")
        except (aiohttp.ClientError, OSError) as error:
            if not call.idempotent and attempt.sent:
                self._finish_failed(call, "unavailable")
                raise ToolOutcomeUnknown(
                    "the connection to the Cronium backend failed after the request was"
                    f" sent: {type(error).__name__}"
                ) from error
            return _Failure(
                "unavailable",
                f"the connection to the Cronium backend failed: {type(error).__name__}: {error}",
            )
        finally:
            call.sent = call.sent or attempt.sent
        if status >= 500:
            message = f"the Cronium backend answered {status}{_error_detail(raw)}"
            message += f" for {call.operation}"
            if not call.idempotent:
                self._finish_failed(call, "server_error")
                raise ToolOutcomeUnknown(message)
            return _Failure("server_error", message)
        return self._answer(
            call.operation, status, raw, call.idempotent, self._clock() - call.started
        )

    def _finish_failed(self, call: _Call, outcome: str) -> None:
        self._failed(outcome)
        self._metrics.count(call.operation, outcome, self._clock() - call.started)

    def _answer(
        self, operation: str, status: int, raw: bytes, idempotent: bool, seconds: float
    ) -> tuple[int, Any]:
        """A non-5xx answer: the backend is alive, so the breaker counts it as a success."""
        self._succeeded()
        if status in (401, 403):
            self._metrics.count(operation, "auth_failed", seconds)
            raise BackendAuthFailedError("the runtime's backend token was refused")
        if status == 404:
            self._metrics.count(operation, "not_found", seconds)
            return status, _parse(raw)
        if 400 <= status < 500:
            self._metrics.count(operation, "client_error", seconds)
            raise BackendStatusError(status, _error_text(raw))
        if not 200 <= status < 300:
            self._metrics.count(operation, "server_error", seconds)
            raise BackendError(f"the Cronium backend answered {status} for {operation}")
        try:
            parsed = jsonlib.loads(raw) if raw else None
        except ValueError:
            self._metrics.count(operation, "server_error", seconds)
            if not idempotent:
                raise ToolOutcomeUnknown(
                    f"the Cronium backend's reply to {operation} is not JSON"
                ) from None
            raise BackendError(f"the Cronium backend's reply to {operation} is not JSON") from None
        self._metrics.count(operation, "ok", seconds)
        return status, parsed

    # The breaker.

    def _enter_breaker(self, operation: str) -> None:
        if self._state == CLOSED:
            return
        remaining = self._breaker_cooldown - (self._clock() - self._opened_at)
        if self._state == OPEN and remaining <= 0:
            self._set_state(HALF_OPEN)
        if self._state == HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True  # this call is the probe
            return
        self._metrics.count(operation, "breaker_open", None)
        raise BackendUnavailableError(
            f"the Cronium backend is failing; circuit open, retrying in {max(remaining, 0.0):.0f}s"
        )

    def _succeeded(self) -> None:
        self._consecutive_failures = 0
        self._last_failure = None
        self._probe_in_flight = False
        if self._state != CLOSED:
            self._set_state(CLOSED)

    def _failed(self, outcome: str) -> None:
        now = self._clock()
        self._last_failure = (outcome, now)
        self._consecutive_failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if (
            was_probe
            or self._state == HALF_OPEN
            or (self._consecutive_failures >= self._breaker_failures)
        ):
            self._opened_at = now
            self._set_state(OPEN)

    def _set_state(self, state: int) -> None:
        self._state = state
        self._metrics.state(state)


async def _mark_sent(session: aiohttp.ClientSession, context: SimpleNamespace, params: Any) -> None:
    attempt = getattr(context, "trace_request_ctx", None)
    if isinstance(attempt, _Attempt):
        attempt.sent = True


def _parse(raw: bytes) -> Any:
    try:
        return jsonlib.loads(raw) if raw else None
    except ValueError:
        return None


def _error_text(raw: bytes) -> str | None:
    body = _parse(raw)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return None


def _error_detail(raw: bytes) -> str:
    text = _error_text(raw)
    return f" ({text})" if text else ""
