"""The Valkey test infrastructure itself, proved with valkey-py's asyncio clients.

Real servers (standalone, password, TLS, appendonly, cluster, sentinel), `CLIENT PAUSE`,
stop and restart on the same port, and the fault proxy's latency, drop and black hole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import fault_proxy
import pytest
import valkey
import valkey_servers
from fault_proxy import FaultProxy, ThreadedFaultProxy
from valkey.asyncio import Valkey
from valkey.asyncio.cluster import ValkeyCluster as ClusterClient
from valkey.asyncio.sentinel import Sentinel
from valkey.exceptions import AuthenticationError
from valkey_servers import HOST, ValkeyCluster, ValkeySentinel, ValkeyServer

StartValkeyServer = Callable[..., ValkeyServer]
StartFaultProxy = Callable[..., ThreadedFaultProxy]
INTEGRATION = Path(__file__).resolve().parents[1]


def test_the_helpers_import_from_the_integration_folder_and_valkey_is_the_client() -> None:
    assert Path(valkey_servers.__file__).resolve().parent == INTEGRATION
    assert Path(fault_proxy.__file__).resolve().parent == INTEGRATION
    # This folder is named valkey too: the client package must still win.
    assert hasattr(valkey, "Valkey")
    assert "site-packages" in Path(valkey.__file__).parts


async def test_set_and_get_through_a_standalone_server(valkey_server: ValkeyServer) -> None:
    client = Valkey.from_url(valkey_server.url(), socket_timeout=2)
    try:
        assert await client.set("greeting", "hello")
        assert await client.get("greeting") == b"hello"
    finally:
        await client.aclose()


async def test_requirepass_refuses_without_the_password_and_serves_a_nonzero_db(
    valkey_server_factory: StartValkeyServer,
) -> None:
    server = valkey_server_factory(password="s3cret/with:odd@chars")
    assert server.url(db=3) == f"valkey://:s3cret%2Fwith%3Aodd%40chars@{HOST}:{server.port}/3"

    anonymous = Valkey.from_url(server.url(password=False), socket_timeout=2)
    wrong = Valkey(host=HOST, port=server.port, password="wrong", socket_timeout=2)
    right = Valkey.from_url(server.url(db=3), socket_timeout=2)
    try:
        with pytest.raises(AuthenticationError):
            await anonymous.get("anything")
        with pytest.raises(AuthenticationError):
            await wrong.ping()
        assert await right.set("in-db-3", "yes")
        assert await right.get("in-db-3") == b"yes"
    finally:
        for client in (anonymous, wrong, right):
            await client.aclose()
    with server.client(db=3) as db3, server.client(db=0) as db0:
        assert db3.get("in-db-3") == b"yes"
        assert db0.get("in-db-3") is None


async def test_tls_with_the_test_ca_works_and_plain_tcp_to_the_tls_port_fails(
    valkey_server_factory: StartValkeyServer,
) -> None:
    server = valkey_server_factory(tls_only=True)
    assert server.port is None  # --port 0: no plain TCP at all
    assert server.tls_files is not None
    assert server.url() == f"valkeys://{HOST}:{server.tls_port}"

    trusted = Valkey.from_url(
        server.url(), ssl_ca_certs=str(server.tls_files.ca_cert), socket_timeout=2
    )
    plain = Valkey.from_url(f"valkey://{HOST}:{server.tls_port}", socket_timeout=2)
    untrusted = Valkey.from_url(server.url(), socket_timeout=2)  # system CAs only
    try:
        assert await trusted.set("over-tls", "1")
        assert await trusted.get("over-tls") == b"1"
        with pytest.raises((valkey.ConnectionError, valkey.TimeoutError)):
            await plain.ping()
        with pytest.raises(valkey.ConnectionError, match=r"(?i)certificate"):
            await untrusted.ping()
    finally:
        for client in (trusted, plain, untrusted):
            await client.aclose()


async def test_a_cluster_client_writes_keys_on_different_slots_and_reads_them_back(
    valkey_cluster: ValkeyCluster,
) -> None:
    client = ClusterClient.from_url(valkey_cluster.url(), socket_timeout=2)
    try:
        keys = [f"infra:key-{index}" for index in range(30)]
        for key in keys:
            assert await client.set(key, key.upper())
        owners = {client.get_node_from_key(key).port for key in keys}
        assert owners == set(valkey_cluster.ports)  # all three primaries hold some
        assert len({client.keyslot(key) for key in keys}) > 1
        for key in keys:
            assert await client.get(key) == key.upper().encode()
        # Keys with one hash tag share a slot, so a multi-key command works on them.
        tagged = {"{infra:tag}:a": "1", "{infra:tag}:b": "2"}
        assert await client.mset(tagged)
        assert await client.mget(list(tagged)) == [b"1", b"2"]
    finally:
        await client.aclose()


async def test_the_sentinel_hands_out_the_primary(valkey_sentinel: ValkeySentinel) -> None:
    sentinel = Sentinel([valkey_sentinel.sentinel_address], socket_timeout=2)
    primary = sentinel.master_for(valkey_sentinel.master_name, socket_timeout=2)
    try:
        host, port = await sentinel.discover_master(valkey_sentinel.master_name)
        assert (host, int(port)) == (HOST, valkey_sentinel.primary.port)
        assert await primary.set("through-sentinel", "ok")
        assert await primary.get("through-sentinel") == b"ok"
    finally:
        await primary.aclose()
        for client in sentinel.sentinels:
            await client.aclose()


async def test_appendonly_data_survives_stop_and_start_on_the_same_port(
    valkey_server_factory: StartValkeyServer,
) -> None:
    server = valkey_server_factory(appendonly=True)
    port, url = server.port, server.url()
    client = Valkey.from_url(url, socket_timeout=2)
    try:
        assert await client.set("kept", "after restart")
        await client.connection_pool.disconnect()

        server.stop()
        assert not server.running
        with pytest.raises(valkey.ConnectionError):
            await client.get("kept")
        server.start()
        assert server.port == port
        assert await client.get("kept") == b"after restart"

        assert await client.set("kept-too", "after a kill")  # appendfsync always: on disk now
        server.kill()
        server.start()
        # valkey-py does not retry by default: a pooled connection from before the restart
        # would fail once ("Connection closed by server"), so the pool connects anew.
        await client.connection_pool.disconnect()
        assert await client.get("kept-too") == b"after a kill"
    finally:
        await client.aclose()


async def test_client_pause_makes_a_command_time_out(valkey_server: ValkeyServer) -> None:
    client = Valkey.from_url(valkey_server.url(), socket_timeout=0.3)
    try:
        assert await client.ping()  # connected before the pause
        valkey_server.pause(1)
        started = time.monotonic()
        with pytest.raises(valkey.TimeoutError):
            await client.get("paused")
        assert time.monotonic() - started < 1
        # CLIENT UNPAUSE would wait out the pause itself (Valkey 8.0): the pause just ends.
        patient = Valkey.from_url(valkey_server.url(), socket_timeout=2)
        try:
            assert await patient.get("paused") is None
        finally:
            await patient.aclose()
        assert time.monotonic() - started >= 0.9
    finally:
        await client.aclose()


async def test_the_fault_proxy_forwards_and_adds_latency_until_restored(
    valkey_server: ValkeyServer, fault_proxy_factory: StartFaultProxy
) -> None:
    assert valkey_server.port is not None
    proxy = fault_proxy_factory(valkey_server.port)
    client = Valkey(host=HOST, port=proxy.port, socket_timeout=2)
    try:
        assert await client.set("proxied", "value")
        assert await client.get("proxied") == b"value"

        proxy.latency(0.2)  # on the open connection as on new ones
        started = time.monotonic()
        assert await client.ping()
        assert time.monotonic() - started >= 0.2

        proxy.restore()
        started = time.monotonic()
        assert await client.ping()
        assert time.monotonic() - started < 0.2
    finally:
        await client.aclose()


async def test_the_fault_proxy_drops_connections_until_restored(
    valkey_server: ValkeyServer, fault_proxy_factory: StartFaultProxy
) -> None:
    assert valkey_server.port is not None
    proxy = fault_proxy_factory(valkey_server.port)
    client = Valkey(host=HOST, port=proxy.port, socket_timeout=1, socket_connect_timeout=1)
    try:
        assert await client.set("proxied", "value")

        proxy.drop()  # the open connection is reset ...
        with pytest.raises(valkey.ConnectionError):
            await client.ping()
        with pytest.raises(valkey.ConnectionError):  # ... and so is each new one
            await client.ping()

        proxy.restore()
        assert await client.get("proxied") == b"value"
    finally:
        await client.aclose()


async def test_the_fault_proxy_black_holes_until_restored(
    valkey_server: ValkeyServer, fault_proxy_factory: StartFaultProxy
) -> None:
    assert valkey_server.port is not None
    proxy = fault_proxy_factory(valkey_server.port)
    client = Valkey(host=HOST, port=proxy.port, socket_timeout=0.3, socket_connect_timeout=1)
    fresh = Valkey(host=HOST, port=proxy.port, socket_timeout=0.3, socket_connect_timeout=1)
    try:
        assert await client.set("proxied", "value")

        proxy.blackhole()  # the open connection goes silent ...
        started = time.monotonic()
        with pytest.raises(valkey.TimeoutError):
            await client.ping()
        assert time.monotonic() - started < 1
        with pytest.raises(valkey.TimeoutError):  # ... and a new one is accepted, then silent
            await fresh.ping()

        proxy.restore()
        assert await client.get("proxied") == b"value"
        assert await fresh.ping()
    finally:
        await client.aclose()
        await fresh.aclose()


def test_the_threaded_fault_proxy_serves_a_sync_client(
    valkey_server: ValkeyServer, fault_proxy_factory: StartFaultProxy
) -> None:
    assert valkey_server.port is not None
    proxy = fault_proxy_factory(valkey_server.port)
    with valkey.Valkey(host=HOST, port=proxy.port, socket_timeout=0.5) as client:
        assert client.ping()
        proxy.drop()
        with pytest.raises(valkey.ConnectionError):
            client.ping()
        proxy.blackhole()
        proxy.restore()
        assert client.ping()
        proxy.blackhole()
        with pytest.raises(valkey.TimeoutError):
            client.ping()
        proxy.restore()
        assert client.ping()


async def test_the_fault_proxy_runs_on_the_tests_own_loop(valkey_server: ValkeyServer) -> None:
    assert valkey_server.port is not None
    proxy = await FaultProxy(HOST, valkey_server.port).start()
    client = Valkey(host=HOST, port=proxy.port, socket_timeout=2)
    try:
        assert await client.ping()
        proxy.latency(0.1)
        started = time.monotonic()
        assert await client.ping()
        assert time.monotonic() - started >= 0.1
        assert proxy.open_connections == 1
    finally:
        await client.aclose()
        await proxy.stop()
    assert proxy.open_connections == 0


def test_a_port_lost_to_another_server_is_retried_with_another(
    valkey_server: ValkeyServer, tmp_path: Path
) -> None:
    late = ValkeyServer(tmp_path / "late")
    late.port = valkey_server.port  # as if another test's server had bound it first
    try:
        late.start()
        assert late.port != valkey_server.port
        assert late.process is not None
        with late.client() as client:
            assert int(client.info("server")["process_id"]) == late.process.pid
        assert "Address already in use" in late.log
    finally:
        late.stop()


def test_a_server_that_cannot_start_fails_the_test_with_its_log(tmp_path: Path) -> None:
    broken = ValkeyServer(tmp_path / "broken", extra_args=["--no-such-directive", "1"])
    with pytest.raises(pytest.fail.Exception, match=r"(?s)exited with status 1.*no-such-directive"):
        broken.start()
    assert not broken.running
