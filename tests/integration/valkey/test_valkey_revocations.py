"""Revocations shared through a real Valkey: what one process publishes, the others read as
updates (only what is new), ended ones trimmed, and an outage that loses nothing: the local
store stands in and its revocations reach Valkey once it answers again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from adapter_kit import MakeGate, OpenClient, eventually
from fault_proxy import ThreadedFaultProxy
from valkey_servers import HOST, ValkeyCluster, ValkeyServer

from adapters.sqlite.revocations import SqliteRevocationList
from adapters.sqlite.store import SqliteStore
from adapters.valkey.client import ValkeyClient
from adapters.valkey.revocations import ValkeyRevocationFeed

NOW = 1_800_000_000.0
DAY = 86_400.0
COMMAND_TIMEOUT = 0.2
OUTAGE_BOUND = COMMAND_TIMEOUT + 0.8  # what a call may take while Valkey does not answer

StartFaultProxy = Callable[..., ThreadedFaultProxy]
MakeFeed = Callable[..., ValkeyRevocationFeed]


class MovableClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def moving() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """The machine's local store, which every process (feed) of a test shares."""
    store = SqliteStore(tmp_path / "store")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def other_machine_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """The local store of a replica on another machine."""
    store = SqliteStore(tmp_path / "other-machine")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def make_feed(
    local_store: SqliteStore, make_gate: MakeGate, moving: MovableClock, open_client: OpenClient
) -> MakeFeed:
    """A feed as one process holds it: its own client (to `url`) and gate, over this
    machine's local store unless given another `store`."""

    def make(
        url: str,
        store: SqliteStore | None = None,
        mode: str = "standalone",
        **options: Any,
    ) -> ValkeyRevocationFeed:
        settings: dict[str, Any] = {"keep_for": DAY, **options}
        settings.setdefault("gate", make_gate())
        client = open_client(
            url, mode=mode, command_timeout=COMMAND_TIMEOUT, connect_timeout=COMMAND_TIMEOUT
        )
        local = SqliteRevocationList(store or local_store, moving)
        return ValkeyRevocationFeed(client=client, local=local, **settings)

    return make


async def test_what_one_process_publishes_the_others_read_once(make_feed: MakeFeed, url: str):
    publisher, reader = make_feed(url), make_feed(url)
    assert await reader.updates() == []

    await publisher.publish("e1", NOW + DAY)
    await publisher.publish("e2", NOW + 60)

    assert await reader.updates() == [("e1", NOW + DAY), ("e2", NOW + 60)]
    assert await reader.updates() == []
    await publisher.publish("e3", NOW + DAY)
    assert await reader.updates() == [("e3", NOW + DAY)]


async def test_revocations_are_shared_through_a_cluster(
    make_feed: MakeFeed, valkey_cluster: ValkeyCluster
):
    publisher = make_feed(valkey_cluster.url(0), mode="cluster")
    reader = make_feed(valkey_cluster.url(2), mode="cluster")
    await reader.updates()

    await publisher.publish("cluster-e1", NOW + DAY)

    assert await reader.updates() == [("cluster-e1", NOW + DAY)]


async def test_a_process_that_starts_later_reads_every_revocation_page_by_page(
    make_feed: MakeFeed, url: str
):
    publisher = make_feed(url)
    for number in range(7):
        await publisher.publish(f"e{number}", NOW + DAY)

    latecomer = make_feed(url, page=3)

    assert [execution for execution, _ in await latecomer.updates()] == [
        f"e{number}" for number in range(7)
    ]


async def test_revocations_older_than_keep_for_are_trimmed_from_the_stream(
    make_feed: MakeFeed, url: str, raw: ValkeyClient
):
    await make_feed(url).publish("old", NOW + DAY)
    # A publisher keeping entries 1 ms: each of its entries trims the ones before, by the
    # server's clock, whole nodes of 100 entries at a time.
    publisher = make_feed(url, keep_for=0.001)

    async def oldest() -> bytes:
        entries = await raw.xrange(publisher.stream_key, count=1)
        return bytes(entries[0][1][b"e"])

    for number in range(1000):
        await publisher.publish(f"filler-{number}", NOW + DAY)
        if await oldest() != b"old":
            break

    assert await oldest() != b"old"
    assert await raw.xlen(publisher.stream_key) < 1000


async def test_an_entry_this_version_cannot_read_is_skipped(
    make_feed: MakeFeed, url: str, raw: ValkeyClient
):
    reader = make_feed(url)
    await raw.xadd(reader.stream_key, {"e": "e1", "u": "not a number"})
    await raw.xadd(reader.stream_key, {"something": "else"})
    await raw.xadd(reader.stream_key, {"e": "e2", "u": repr(NOW + DAY)})

    assert await reader.updates() == [("e2", NOW + DAY)]


# --- Valkey away


@pytest.fixture
def proxy(valkey_server: ValkeyServer, fault_proxy_factory: StartFaultProxy) -> ThreadedFaultProxy:
    assert valkey_server.port is not None
    return fault_proxy_factory(valkey_server.port)


@pytest.mark.parametrize("fault", ["blackhole", "drop"])
async def test_a_revocation_during_an_outage_goes_to_the_store_and_to_valkey_once_back(
    *,  # pytest passes fixtures by name
    make_feed: MakeFeed, make_gate: MakeGate, url: str, proxy: ThreadedFaultProxy,
    fallbacks: list[str], fault: str, local_store: SqliteStore,
    other_machine_store: SqliteStore, moving: MovableClock,
):  # fmt: skip
    gate = make_gate(first_pause=0.01, longest_pause=0.05)
    cut_off = make_feed(f"valkey://{HOST}:{proxy.port}", gate=gate)
    other_machine = make_feed(url, store=other_machine_store)
    assert await cut_off.updates() == []
    assert await other_machine.updates() == []
    getattr(proxy, fault)()

    await asyncio.wait_for(cut_off.publish("e1", NOW + DAY), OUTAGE_BOUND)

    assert "revoke" in fallbacks
    assert await SqliteRevocationList(local_store, moving).is_revoked("e1")
    assert await other_machine.updates() == []  # the remaining risk, until Valkey is back
    proxy.restore()
    seen: list[tuple[str, float]] = []

    async def arrived() -> bool:
        await cut_off.updates()  # Valkey answers again: what is owed is added to the stream
        seen.extend(await other_machine.updates())
        return ("e1", NOW + DAY) in seen

    await eventually(arrived, within=5.0)


async def test_a_process_that_starts_pushes_what_a_stopped_one_left_in_the_store(
    make_feed: MakeFeed, url: str, local_store: SqliteStore, moving: MovableClock,
    other_machine_store: SqliteStore,
):  # fmt: skip
    other_machine = make_feed(url, store=other_machine_store)
    assert await other_machine.updates() == []
    # A process revoked during an outage and stopped before Valkey answered it again.
    await SqliteRevocationList(local_store, moving).publish("e1", NOW + DAY)

    await make_feed(url).updates()  # the next process of this machine to start

    assert await other_machine.updates() == [("e1", NOW + DAY)]


async def test_while_valkey_is_away_updates_still_bring_the_machines_revocations(
    make_feed: MakeFeed, make_gate: MakeGate, proxy: ThreadedFaultProxy, moving: MovableClock,
    local_store: SqliteStore,
):  # fmt: skip
    feed = make_feed(f"valkey://{HOST}:{proxy.port}", gate=make_gate(first_pause=60.0))
    await feed.updates()
    proxy.blackhole()
    sibling_store = SqliteStore(local_store.folder)  # another process's connection to the file
    await sibling_store.open()
    try:
        await SqliteRevocationList(sibling_store, moving).publish("e1", NOW + DAY)

        found = await asyncio.wait_for(feed.updates(), OUTAGE_BOUND)  # tries Valkey, then the store

        assert ("e1", NOW + DAY) in found
    finally:
        await sibling_store.close()
