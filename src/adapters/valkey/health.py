from __future__ import annotations

import asyncio
import time

from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from application.ports import HealthProbe
from domain.model import DependencyHealth


class ValkeyHealthProbe(HealthProbe):
    """Valkey answers PING. A failure also closes the gate, and a success opens it again,
    so that readiness checks bring Valkey back into use without waiting for traffic."""

    name = "valkey"

    def __init__(self, client: ValkeyClient, gate: ValkeyGate, *, timeout: float) -> None:
        self._client = client
        self._gate = gate
        self._timeout = timeout

    async def check(self) -> DependencyHealth:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.ping()
        except UNAVAILABLE as error:
            self._gate.mark_down(error)
            return DependencyHealth(
                status="down",
                latency_ms=(time.perf_counter() - started) * 1000,
                error=f"{type(error).__name__}: {error}",
            )
        self._gate.succeeded()
        return DependencyHealth(status="up", latency_ms=(time.perf_counter() - started) * 1000)
