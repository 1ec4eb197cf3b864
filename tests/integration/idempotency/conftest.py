"""The idempotency stores' world: a real valkey-server per test, SQLite stores on disk, and
a clock that moves only when told."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from valkey_servers import ValkeyServer

from adapters.sqlite.store import SqliteStore
from adapters.valkey.client import ValkeyClient, ValkeyOptions, create_client


class ManualClock:
    """Seconds that move only by `advance`."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def open_valkey(
    valkey_server: ValkeyServer,
) -> AsyncIterator[Callable[[], ValkeyClient]]:
    """`open_valkey()`: a new client of the test's server (another replica's, if called
    again); every one closed at teardown."""
    clients: list[ValkeyClient] = []

    def open_one() -> ValkeyClient:
        client = create_client(ValkeyOptions(url=valkey_server.url(), command_timeout=0.5))
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        await client.aclose()


@pytest.fixture
async def open_sqlite(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[SqliteStore]]]:
    """`await open_sqlite()`: a new connection to the test's one store file (another
    process's, if called again); every one closed at teardown."""
    stores: list[SqliteStore] = []

    async def open_one() -> SqliteStore:
        store = SqliteStore(tmp_path / "store")
        await store.open()
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        await store.close()
