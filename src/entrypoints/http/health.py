"""Liveness, readiness and metrics: open to anyone, no token."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, Literal

from litestar import MediaType, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from application.ports import HealthProbe
from domain.model import DependencyHealth, utc_timestamp
from entrypoints.http.auth import PUBLIC
from entrypoints.http.openapi import ANY_REQUEST, documented
from entrypoints.http.schemas import CheckOut, Health, Readiness
from entrypoints.version import VERSION

PROBE_TIMEOUT = 2.0


@get(
    "/health",
    opt={PUBLIC: True},
    tags=["health"],
    summary="Liveness: the process answers",
    operation_class=documented(*ANY_REQUEST),
)
async def health() -> Health:
    return Health(status="healthy", time=utc_timestamp(datetime.now(UTC)), version=VERSION)


@get(
    "/health/ready",
    opt={PUBLIC: True},
    tags=["health"],
    summary="Readiness: can it serve scripts now",
    responses={
        503: ResponseSpec(
            Readiness,
            generate_examples=False,
            description="Unavailable: starting, shutting down, or unable to serve any request",
        )
    },
    operation_class=documented(*ANY_REQUEST),
)
async def readiness(
    request: Request[Any, Any, Any], health_probes: NamedDependency[list[HealthProbe]]
) -> Response[Readiness]:
    checks = dict(
        zip(
            (probe.name for probe in health_probes),
            await asyncio.gather(*(_timed_check(probe) for probe in health_probes)),
            strict=True,
        )
    )
    status: Literal["ready", "degraded", "unavailable"] = "ready"
    if not request.app.state.get("serving", False) or _cannot_serve(checks):
        status = "unavailable"
    elif any(check.status == "down" for check in checks.values()):
        status = "degraded"
    return Response(
        Readiness(status=status, checks=checks), status_code=503 if status == "unavailable" else 200
    )


@get(
    "/metrics",
    opt={PUBLIC: True},
    tags=["health"],
    summary="Prometheus metrics",
    media_type=MediaType.TEXT,
    operation_class=documented(*ANY_REQUEST),
)
async def metrics(metrics_registry: NamedDependency[CollectorRegistry]) -> Response[bytes]:
    # As a header: Litestar would add a second charset to a text/* media type.
    return Response(
        generate_latest(metrics_registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _cannot_serve(checks: dict[str, CheckOut]) -> bool:
    """Whether no script request can be answered: the embedded store is down, or the
    backend is down with no Valkey up to serve cached reads. A backend outage with Valkey up
    only degrades the service (cached reads are served stale), and pulling every replica
    out of the load balancer for it would turn answered 503s into refused connections."""

    def down(name: str) -> bool:
        return name in checks and checks[name].status == "down"

    valkey_up = "valkey" in checks and checks["valkey"].status == "up"
    return down("store") or (down("backend") and not valkey_up)


async def _timed_check(probe: HealthProbe) -> CheckOut:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            result = await probe.check()
    except TimeoutError:
        result = DependencyHealth(status="down", error=f"no answer within {PROBE_TIMEOUT:g} s")
    except Exception as error:  # a probe that fails says "down", it does not fail readiness
        result = DependencyHealth(status="down", error=f"{type(error).__name__}: {error}")
    latency = result.latency_ms or (time.perf_counter() - started) * 1000
    return CheckOut(status=result.status, latency_ms=round(latency, 3), error=result.error)  # type: ignore[arg-type]
