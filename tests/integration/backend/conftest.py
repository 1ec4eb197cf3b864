"""A fake Cronium backend per test, and backend clients bound to it with small waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import prometheus_client
import pytest
from fake_backend import CONTEXT, ClientFactory, FakeBackend

from adapters.backend_http.client import HttpBackendClient


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    fake = FakeBackend()
    fake.contexts["exec-1"] = dict(CONTEXT)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def make_client(backend: FakeBackend) -> AsyncIterator[ClientFactory]:
    clients: list[HttpBackendClient] = []

    async def make(**overrides: Any) -> HttpBackendClient:
        settings: dict[str, Any] = {
            "base_url": backend.base_url,
            "token": backend.token,
            "timeout": 1.0,
            "max_retries": 2,
            "retry_delay": 0.01,
            "breaker_failures": 100,
            "breaker_cooldown": 5.0,
            "registry": prometheus_client.CollectorRegistry(),
        }
        settings.update(overrides)
        client = HttpBackendClient(**settings)
        await client.open()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> HttpBackendClient:
    made: HttpBackendClient = await make_client()
    return made
