"""Real Valkey for the tests in this folder: servers, a cluster, a sentinel, a fault proxy.

Each fixture starts real `valkey-server` processes on free loopback ports (see
`tests/integration/valkey_servers.py`) and stops them at teardown. With no valkey-server on
this machine every test here fails (never skips), saying that `./dev test` installs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import ThreadedFaultProxy
from valkey_servers import (
    HOST,
    ValkeyCluster,
    ValkeySentinel,
    ValkeyServer,
    require_binary,
)


@pytest.fixture(autouse=True)
def _valkey_installed() -> None:
    """Fails, never skips, every test here on a machine without valkey-server and valkey-cli."""
    require_binary("valkey-server")
    require_binary("valkey-cli")


StartValkeyServer = Callable[..., ValkeyServer]


@pytest.fixture
def valkey_server_factory(tmp_path: Path) -> Iterator[StartValkeyServer]:
    """Starts a `ValkeyServer(**options)` (password=, tls=, tls_only=, appendonly=, ...), ready.

    Every server it started is stopped at teardown, whatever the test did to it.
    """
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
    """A plain standalone server: no password, no TLS, no persistence."""
    return valkey_server_factory()


@pytest.fixture(scope="module")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """Three primaries on loopback with every slot assigned; shared by a module's tests,
    which should use keys of their own (creating a cluster takes a few seconds)."""
    require_binary("valkey-server")
    require_binary("valkey-cli")
    cluster = ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def valkey_sentinel(tmp_path: Path) -> Iterator[ValkeySentinel]:
    """One primary and one Sentinel monitoring it as `mymaster`."""
    sentinel = ValkeySentinel(tmp_path / "sentinel-setup")
    sentinel.start()
    yield sentinel
    sentinel.stop()


StartFaultProxy = Callable[..., ThreadedFaultProxy]


@pytest.fixture
def fault_proxy_factory() -> Iterator[StartFaultProxy]:
    """Starts a `ThreadedFaultProxy` to `target_port` (on 127.0.0.1 unless `target_host`).

    The proxy runs on a loop of its own in a background thread, so the same fixture serves
    sync tests, async tests, and tests whose client is another process. Stopped at teardown.
    """
    started: list[ThreadedFaultProxy] = []

    def start(target_port: int, *, target_host: str = HOST) -> ThreadedFaultProxy:
        proxy = ThreadedFaultProxy(target_host, target_port)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()
