"""The overall deadline against a backend that goes silent on the wire: a black hole in the
tests' TCP fault proxy between the adapter and the fake backend, not a switch in the fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from fake_backend import ClientFactory, FakeBackend
from fault_proxy import FaultProxy

from adapters.backend_http.repositories import BackendToolGateway, BackendVariableRepository
from domain.errors import BackendUnavailableError
from domain.model import ToolCall

DEADLINE = 0.5
MARGIN = 1.5  # a loaded CI machine; the point is bounded, not hanging


@pytest.fixture
async def proxy(backend: FakeBackend) -> AsyncIterator[FaultProxy]:
    address = urlsplit(backend.base_url)
    started = await FaultProxy(address.hostname or "127.0.0.1", address.port or 80).start()
    yield started
    await started.stop()


async def test_a_read_from_a_black_holed_backend_fails_within_the_deadline(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = await make_client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=DEADLINE)
    variables = BackendVariableRepository(client)
    proxy.blackhole()

    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        await variables.get("user-1", "k")

    assert time.monotonic() - started < DEADLINE + MARGIN


async def test_a_tool_call_into_a_black_hole_is_an_unknown_outcome_never_repeated(
    proxy: FaultProxy, make_client: ClientFactory, backend: FakeBackend
) -> None:
    client = await make_client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=DEADLINE)
    tools = BackendToolGateway(client)
    proxy.blackhole()
    call = ToolCall(
        execution_id="exec-1",
        user_id="user-1",
        tool="slack",
        action="send_message",
        params={"text": "hi"},
        request_id="req-1",
    )

    started = time.monotonic()
    result = await tools.execute(call)
    elapsed = time.monotonic() - started
    proxy.restore()  # the held bytes now reach the backend: once, never a second time

    assert (result.success, result.code) == (False, "TOOL_OUTCOME_UNKNOWN")
    assert elapsed < DEADLINE + MARGIN
    await asyncio.sleep(0.3)
    assert len(backend.of("tool")) <= 1
