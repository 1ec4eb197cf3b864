"""What wraps every request before routing: its id, its access-log line and its metrics.

It wraps Litestar's ASGI handler rather than sitting in the app's middleware list because
Litestar runs that list after routing and inside its exception handling: answers for unknown
routes and wrong methods would go uncounted, and errors raised by the authentication
middleware (401, 429) would pass it as exceptions rather than as statuses.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING

from litestar.enums import ScopeType
from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Histogram

from adapters.request_context import CURRENT_REQUEST_ID

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

USABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
REQUEST_ID_HEADER = b"x-request-id"


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

        try:
            await self._app(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = scope.get("method", "")
            self._metrics.requests.labels(route, method, str(status)).inc()
            self._metrics.latency.labels(route, method).observe(elapsed)
            client = scope.get("client")
            logger.info(
                "{method} {route} {status} {ms:.1f}ms",
                method=method,
                route=route,
                status=status,
                ms=round(elapsed * 1000, 3),
                request_id=request_id,
                client=client[0] if client else None,
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if USABLE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex
