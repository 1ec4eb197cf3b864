"""The service's Valkey client (`create_client`) against servers that stop answering: every
command, pipeline and connection is bounded, a connection whose command timed out or was
cancelled is never reused with its reply unread, a connection the server closed is replaced
without an error, and callers beyond the pool's size wait their turn within its bound.

A server is stopped with SIGSTOP (its sockets stay open and accept, nothing answers) and
always continued before the test ends."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest
from adapter_kit import OpenClient
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import TimeoutError as ValkeyTimeoutError
from valkey_servers import HOST, ValkeySentinel, ValkeyServer

from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import UNAVAILABLE

COMMAND_TIMEOUT = 0.2
BOUND = COMMAND_TIMEOUT + 0.8  # what a command may take while Valkey does not answer (loaded CI)


@contextlib.contextmanager
def stopped(server: ValkeyServer) -> Iterator[None]:
    """The server frozen (SIGSTOP) for the body, continued (SIGCONT) whatever happens."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


async def fails_within_bound(call: Awaitable[Any]) -> BaseException:
    """The error `call` raised within BOUND, which must be one the adapters fall back on."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=BOUND)
    if not done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        pytest.fail(f"the call was still waiting after {BOUND}s")
    error = task.exception()
    assert isinstance(error, UNAVAILABLE), error
    return error


@pytest.fixture
def client(open_client: OpenClient, valkey_server: ValkeyServer) -> ValkeyClient:
    """One connection only, so that a test's later command reuses the same pool slot."""
    return open_client(
        valkey_server.url(),
        command_timeout=COMMAND_TIMEOUT,
        connect_timeout=COMMAND_TIMEOUT,
        pool_size=1,
    )


async def test_a_command_to_a_stopped_server_times_out_and_the_next_reads_its_own_reply(
    client: ValkeyClient, valkey_server: ValkeyServer
) -> None:
    await client.set("first", "1")
    await client.set("second", "2")

    with stopped(valkey_server):
        error = await fails_within_bound(client.get("first"))

    assert isinstance(error, ValkeyTimeoutError)
    # The server now answers the timed-out GET too; that reply must not be read as this one's.
    assert await client.get("second") == b"2"
    assert await client.get("first") == b"1"


async def test_a_command_cancelled_by_its_caller_leaves_no_reply_for_the_next(
    client: ValkeyClient, valkey_server: ValkeyServer
) -> None:
    await client.set("first", "1")
    await client.set("second", "2")

    with stopped(valkey_server):
        pending = asyncio.ensure_future(client.get("first"))
        await asyncio.sleep(0.05)  # sent, waiting for its reply
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending

    assert await client.get("second") == b"2"


async def test_a_pipeline_to_a_stopped_server_times_out_and_the_next_one_works(
    client: ValkeyClient, valkey_server: ValkeyServer
) -> None:
    await client.set("first", "1")

    with stopped(valkey_server):
        pipeline = client.pipeline()
        pipeline.incr("counter").get("first")
        await fails_within_bound(pipeline.execute())

    pipeline = client.pipeline()
    pipeline.set("second", "2").get("first")
    assert await pipeline.execute() == [True, b"1"]


async def test_a_connection_the_server_closed_is_replaced_without_an_error(
    client: ValkeyClient, raw: ValkeyClient
) -> None:
    assert await client.set("kept", "yes")
    await raw.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    assert await client.get("kept") == b"yes"


async def test_a_server_that_accepts_but_never_answers_fails_the_first_command_in_bound(
    open_client: OpenClient,
) -> None:
    # The connection's own handshake (CLIENT SETINFO) is what waits here: it is bounded by
    # connectTimeout like the TCP connect, though no command timeout covers it.
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(8)  # the kernel completes the handshakes; nobody reads or writes
        port = silent.getsockname()[1]
        client = open_client(
            f"valkey://{HOST}:{port}",
            command_timeout=COMMAND_TIMEOUT,
            connect_timeout=COMMAND_TIMEOUT,
        )

        await fails_within_bound(client.get("anything"))
        await fails_within_bound(client.get("anything"))  # and again, not stuck on the first


async def test_callers_beyond_the_pool_wait_within_its_bound_then_the_pool_serves_again(
    open_client: OpenClient, valkey_server: ValkeyServer
) -> None:
    client = open_client(
        valkey_server.url(), command_timeout=1.0, connect_timeout=COMMAND_TIMEOUT, pool_size=1
    )
    await client.set("k", "v")

    with stopped(valkey_server):
        holding = asyncio.ensure_future(client.get("k"))  # holds the only connection
        await asyncio.sleep(0.05)
        waited = await fails_within_bound(client.get("k"))
        assert isinstance(waited, ValkeyConnectionError)
        assert "No connection available" in str(waited)
        await fails_within_bound(holding)

    assert await asyncio.gather(*(client.get("k") for _ in range(20))) == [b"v"] * 20


async def test_the_sentinels_primary_is_bounded_by_the_command_timeout_too(
    open_client: OpenClient, valkey_sentinel: ValkeySentinel
) -> None:
    host, port = valkey_sentinel.sentinel_address
    client = open_client(
        f"valkey://{host}:{port}",
        mode="sentinel",
        sentinel_master=valkey_sentinel.master_name,
        command_timeout=COMMAND_TIMEOUT,
        pool_size=1,
    )
    await client.set("first", "1")
    await client.set("second", "2")

    with stopped(valkey_sentinel.primary):
        await fails_within_bound(client.get("first"))

    assert await client.get("second") == b"2"


async def test_callers_that_give_up_while_waiting_for_the_pool_leak_no_connection(
    open_client: OpenClient, valkey_server: ValkeyServer
) -> None:
    # Each caller that gives up mid-command closes its connection, so the storm below makes
    # dozens of new connections: their set-up gets a wait a loaded machine keeps to.
    patience = 1.0
    client = open_client(
        valkey_server.url(), command_timeout=2 * patience, connect_timeout=patience, pool_size=2
    )
    await client.set("k", "v")

    async def impatient(wait: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await client.get("k")

    for _ in range(5):
        patient = [client.get("k") for _ in range(10)]
        gave_up = [impatient(wait) for wait in (0, 0.0001, 0.0005, 0.001, 0.002) * 4]
        answers = await asyncio.gather(*patient, *gave_up)
        assert answers[:10] == [b"v"] * 10

    # Both connections are back: two commands held past the pool's wait (connectTimeout)
    # still get one each; a leaked one would leave the second "No connection available".
    with stopped(valkey_server):
        held = [asyncio.ensure_future(client.get("k")) for _ in range(2)]
        await asyncio.sleep(patience + 0.15)
    assert await asyncio.gather(*held) == [b"v", b"v"]
