"""Real Valkey for the tests in this folder: servers, a cluster, a sentinel, a fault proxy.

Each fixture starts real `valkey-server` processes on free loopback ports (see
`tests/integration/valkey_servers.py`) and stops them at teardown. With no valkey-server on
this machine every test here fails (never skips), saying that `./dev test` installs it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from adapter_kit import (
    STALE_WINDOW,
    TTL,
    Kit,
    MakeCache,
    MakeGate,
    ManualClock,
    ObservedVariables,
    OpenClient,
)
from fault_proxy import ThreadedFaultProxy
from service_kit import SECRET, Execution, RunCli, StartServer
from valkey_servers import (
    HOST,
    ValkeySentinel,
    ValkeyServer,
    require_binary,
)

from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import ValkeyGate
from adapters.valkey.variables import ValkeyVariableCache
from application.ports import VariableRepository


@pytest.fixture(autouse=True)
def _valkey_installed() -> None:
    """Fails, never skips, every test here on a machine without valkey-server and valkey-cli."""
    require_binary("valkey-server")
    require_binary("valkey-cli")


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


# --- the Valkey adapter tests' fixtures


@pytest.fixture
def fallbacks() -> list[str]:
    """The operations that fell back, as every gate made by `make_gate` reports them."""
    return []


@pytest.fixture
def make_gate(fallbacks: list[str]) -> MakeGate:
    def make(**options: Any) -> ValkeyGate:
        return ValkeyGate(on_fallback=fallbacks.append, **options)

    return make


@pytest.fixture
async def make_cache(open_client: OpenClient, make_gate: MakeGate) -> AsyncIterator[MakeCache]:
    """A `ValkeyVariableCache` (TTL 60 s, stale window 1 h, lock 5 s, wait 2 s unless told);
    each one `aclose`d at teardown, before the clients."""
    caches: list[ValkeyVariableCache] = []

    def make(
        client: ValkeyClient, inner: VariableRepository, **options: Any
    ) -> ValkeyVariableCache:
        settings: dict[str, Any] = {
            "ttl": TTL,
            "stale_window": STALE_WINDOW,
            "lock_ttl": 5.0,
            "lock_wait": 2.0,
            **options,
        }
        settings.setdefault("gate", make_gate())
        cache = ValkeyVariableCache(inner=inner, client=client, **settings)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.aclose()


@pytest.fixture
def url(valkey_server: ValkeyServer) -> str:
    return valkey_server.url()


@pytest.fixture
def raw(open_client: OpenClient, url: str) -> ValkeyClient:
    """A client of the test's own, to look into Valkey and to play another writer."""
    return open_client(url)


@pytest.fixture
def store() -> ObservedVariables:
    return ObservedVariables()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cache(
    make_cache: MakeCache, open_client: OpenClient, url: str, store: ObservedVariables,
    clock: ManualClock,
) -> ValkeyVariableCache:  # fmt: skip
    return make_cache(open_client(url), store, clock=clock)


@pytest.fixture
def replica(
    make_cache: MakeCache, open_client: OpenClient, url: str, store: ObservedVariables,
    clock: ManualClock,
) -> ValkeyVariableCache:  # fmt: skip
    """A second cache on a client of its own, over the same store: another replica."""
    return make_cache(open_client(url), store, clock=clock)


@pytest.fixture
def kit(
    *,  # pytest passes fixtures by name
    url: str, raw: ValkeyClient, store: ObservedVariables, clock: ManualClock,
    fallbacks: list[str], open_client: OpenClient, make_gate: MakeGate, make_cache: MakeCache,
) -> Kit:  # fmt: skip
    return Kit(url, raw, store, clock, fallbacks, open_client, make_gate, make_cache)


# --- the service-process tests' fixtures


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """The one system of record that the processes of a test share."""
    return tmp_path / "store"


@pytest.fixture
def cli_env(environment: dict[str, str], store_path: Path) -> dict[str, str]:
    """The CLI's environment: the shared store and secret, and no Valkey (the store alone)."""
    return {**environment, "JWT_SECRET": SECRET, "STORE_PATH": str(store_path)}


@pytest.fixture
def new_execution(run_cli: RunCli, cli_env: dict[str, str]) -> Callable[[], Execution]:
    def create() -> Execution:
        done = run_cli(cli_env, "executions", "create", "--json")
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)
        return Execution(created["executionId"], created["token"])

    return create


@pytest.fixture
def vars_cli(run_cli: RunCli, cli_env: dict[str, str]) -> Callable[..., Any]:
    """`cronium-runtime vars ARGS...` on the shared store, through Valkey at `valkey_url`
    (the same container as the server's) or on the store alone."""

    def run(*args: str, valkey_url: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(cli_env)
        if valkey_url is not None:
            env["VALKEY_URL"] = valkey_url
        return run_cli(env, "vars", *args)

    return run


@pytest.fixture
def store_value(run_cli: RunCli, cli_env: dict[str, str]) -> Callable[[str], Any]:
    """What the store itself holds for a variable (`vars get` without Valkey)."""

    def read(key: str) -> Any:
        done = run_cli(cli_env, "vars", "get", key)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return read


@pytest.fixture
def service(start_server: StartServer, store_path: Path) -> Callable[..., Any]:
    """`serve` on the shared store with Valkey at `url` (and `overrides`), answering /health."""

    def start(url: str | None, **overrides: str) -> Any:
        env = {
            "JWT_SECRET": SECRET,
            "STORE_PATH": str(store_path),
            "VALKEY_READ_TIMEOUT": "200ms",
            **overrides,
        }
        if url is not None:
            env["VALKEY_URL"] = url
        return start_server(**env)

    return start
