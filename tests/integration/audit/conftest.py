"""The audit trail's world: real valkey-server processes, the fake Cronium backend on a loop
thread of its own, and `serve` processes in backend mode with short audit waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_kit import SECRET, LoopThread, Service, ThreadedBackend
from valkey_servers import ValkeyCluster, ValkeyServer, require_binary

from adapters.valkey.client import ValkeyClient, ValkeyOptions, create_client

StartValkeyServer = Callable[..., ValkeyServer]
MakeService = Callable[..., Service]


@pytest.fixture
def valkey_server_factory(tmp_path: Path) -> Iterator[StartValkeyServer]:
    """Starts a `ValkeyServer(**options)` (appendonly=, ...), ready; all stopped at teardown."""
    require_binary("valkey-server")
    started: list[ValkeyServer] = []

    def start(**options: Any) -> ValkeyServer:
        server = ValkeyServer(tmp_path / f"valkey-{len(started)}", **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def valkey_server(valkey_server_factory: StartValkeyServer) -> ValkeyServer:
    return valkey_server_factory()


@pytest.fixture(scope="module")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    require_binary("valkey-server")
    require_binary("valkey-cli")
    cluster = ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


OpenClient = Callable[..., ValkeyClient]


@pytest.fixture
async def open_client() -> AsyncIterator[OpenClient]:
    """`create_client(ValkeyOptions(url=..., **options))`; every client closed at teardown."""
    clients: list[ValkeyClient] = []

    def open_one(url: str, **options: Any) -> ValkeyClient:
        client = create_client(ValkeyOptions(url=url, **options))
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        await client.aclose()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def fake(loop_thread: LoopThread) -> Iterator[ThreadedBackend]:
    backend = ThreadedBackend(loop_thread)
    backend.start()
    yield backend
    backend.stop()


@pytest.fixture
def service(
    start_server: Callable[..., Any], run_cli: Callable[..., Any], fake: ThreadedBackend
) -> MakeService:
    """`serve` in backend mode against the fake, audited to the backend, with waits short
    enough for a test: a retry at most every second, claims taken over after two."""

    def start(**overrides: str) -> Service:
        env = {
            "BACKEND_URL": fake.fake.base_url,
            "BACKEND_TOKEN": fake.fake.token,
            "JWT_SECRET": SECRET,
            "BACKEND_TIMEOUT": "2s",
            "BACKEND_MAX_RETRIES": "1",
            "BACKEND_RETRY_DELAY": "50ms",
            "VALKEY_READ_TIMEOUT": "300ms",
            "AUDIT_SHIP_RETRY_MAX": "1s",
            "RATE_LIMIT_PER_MIN": "100000",
            **overrides,
        }
        return Service(start_server(**env), run_cli)

    return start
