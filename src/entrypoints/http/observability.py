"""What wraps every request before routing: its id, its access-log line and its metrics.

It wraps Litestar's ASGI handler rather than sitting in the app's middleware list because
Litestar runs that list after routing and inside its exception handling: answers for unknown
routes and wrong methods would go uncounted, and errors raised by the authentication
middleware (401, 429) would pass it as exceptions rather than as statuses.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from litestar.enums import ScopeType
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from adapters.request_context import CURRENT_REQUEST_ID
from domain.errors import ShuttingDownError
from domain.ids import random_hex
from entrypoints.http.errors import REASON, status_of
from entrypoints.http.schemas import ErrorBody
from entrypoints.logs import log_access
from entrypoints.version import VERSION

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

USABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED_ROUTE = "unmatched"
# Any other method a client sends is counted as "OTHER": a label value per made-up method
# would let anyone grow the metrics without bound.
COUNTED_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
TOOL_ROUTE = "/tool-actions/execute"


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "cronium_runtime_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "cronium_runtime_http_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its answer.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        # Summed over the running workers: how many requests the whole server holds.
        self.in_flight = Gauge(
            "cronium_runtime_http_requests_in_flight",
            "HTTP requests received and not yet answered.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # The labelled series of each (route, method, status) seen, looked up once: `labels`
        # checks and converts its values under a lock on every call (about 1.2 µs each). As
        # bounded as the series themselves: route templates, counted methods and statuses.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count an answer and observe its latency."""
        series = self._series.get((route, method, status))
        if series is None:
            series = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
            self._series[(route, method, status)] = series
        series[0].inc()
        series[1].observe(seconds)


def build_info_gauge(registry: CollectorRegistry) -> Gauge:
    """`cronium_runtime_build_info{version,python} 1`: a Gauge, since prometheus-client's
    Info does not work across processes. Every worker sets the same series to 1, so the
    largest reading of the running ones is it."""
    info = Gauge(
        "cronium_runtime_build_info",
        "The running service's version and Python version; always 1.",
        ["version", "python"],
        registry=registry,
        multiprocess_mode="livemax",
    )
    info.labels(version=VERSION, python=platform.python_version()).set(1)
    return info


def multiprocess_mode() -> bool:
    """Whether prometheus-client keeps this process's values in the files of
    PROMETHEUS_MULTIPROC_DIR: decided once, when the library was first imported."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def scrape_registry(registry: CollectorRegistry) -> Callable[[], CollectorRegistry]:
    """What `/metrics` reads: this process's `registry`, or, when the server's processes share
    their metrics through PROMETHEUS_MULTIPROC_DIR, a fresh registry per scrape whose
    collector adds up the files of every process, living or stopped (gauges by their
    `multiprocess_mode`), so that whichever worker answers tells the same totals."""
    folder = os.environ.get(MULTIPROC_VARIABLE)
    if not multiprocess_mode():
        if folder:
            raise RuntimeError(
                f"prometheus_client was imported before {MULTIPROC_VARIABLE} was set: this"
                " process's metrics would be missing from /metrics"
            )
        return lambda: registry
    if not folder:
        raise RuntimeError(f"prometheus_client shares metrics but {MULTIPROC_VARIABLE} is unset")

    def every_process() -> CollectorRegistry:
        fresh = CollectorRegistry()
        MultiProcessCollector(fresh, path=folder)  # type: ignore[no-untyped-call]
        return fresh

    return every_process


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope["state"]["request_id"] = request_id
        CURRENT_REQUEST_ID.set(request_id)
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        self._metrics.in_flight.inc()
        try:
            await self._app(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.in_flight.dec()
            route = scope.get("path_template") or UNMATCHED_ROUTE
            method = scope.get("method", "")
            counted_method = method if method in COUNTED_METHODS else "OTHER"
            self._metrics.answered(route, counted_method, status, elapsed)
            client = scope.get("client")
            log_access(
                logger_name=__name__,
                method=method,
                route=route,
                status=status,
                ms=round(elapsed * 1000, 3),
                request_id=request_id,
                client=client[0] if client else None,
            )


class AnswerCutOff:
    """Answers a request that is cancelled before it was answered, which in this server only
    uvicorn does: to the requests still running `server.shutdownTimeout` after the listener
    closed.

    Left to itself, uvicorn would log the cancellation as an error with its traceback and
    answer a bare 500, which the Cronium helpers retry, a tool action included. Instead a tool
    action gets the tool result that says it may or may not have run (200
    `TOOL_OUTCOME_UNKNOWN`, never sent again), and anything else 503 `SHUTTING_DOWN`, which
    is safe to retry elsewhere: every other operation may run twice. The cancellation ends
    here, answered; nothing awaits a request's task.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, send_tracked)
        except asyncio.CancelledError:
            if started:
                raise
            status, body = _cut_off_answer(scope)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})


def _cut_off_answer(scope: Scope) -> tuple[int, bytes]:
    if scope.get("path_template") == TOOL_ROUTE:
        return 200, msgspec.json.encode(
            {
                "success": False,
                "data": None,
                "error": "the service stopped before the tool's answer came; the tool may or"
                " may not have run, and it will not be sent again",
                "code": "TOOL_OUTCOME_UNKNOWN",
            }
        )
    error = ShuttingDownError(
        "the service is shutting down and stopped this request before it finished; send it again"
    )
    status = status_of(error)
    return status, msgspec.json.encode(
        ErrorBody(success=False, error=REASON[status], message=error.message, code=error.code)
    )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if USABLE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return random_hex()
