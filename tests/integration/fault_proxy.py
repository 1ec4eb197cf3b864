"""A TCP proxy of the tests' own that injects network faults between a client and Valkey.

`FaultProxy(target_host, target_port)` listens on a free loopback port (`port`) and forwards
each connection to the target. Its switches act at once, on open connections too:

- `latency(seconds)`: every chunk, in either direction, is held `seconds` before it is passed on.
- `drop()`: every open connection is reset (RST), and new ones are accepted and reset at
  once, until `restore()`. The listening socket stays, so the port is never lost to another
  process; a client sees a connection error on connect or on its first command.
- `blackhole()`: connections are accepted (and kept open) but no byte is passed on in either
  direction, as in a network partition; a new connection does not even reach the target.
  At `restore()` the bytes held in the socket buffers flow again, as TCP would deliver them.
- `restore()`: clears all three (latency back to 0).

`FaultProxy` runs on the event loop that calls `await start()`: use it from async tests, and
call its switches from that loop. A sync test (or an async test whose loop blocks, e.g. in
a `subprocess.run` or an `http.client` call to a service process that goes through the
proxy) uses `ThreadedFaultProxy`: the same proxy on an event loop of its own in a background
daemon thread, with blocking `start()` and `stop()` and switches that are safe to call from
any thread and return once they have taken effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

HOST = "127.0.0.1"
CHUNK = 65536
CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 10.0

T = TypeVar("T")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN, as a dropped connection looks."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)
        if self.task is not None:
            self.task.cancel()


class FaultProxy:
    """See the module docstring. Not thread-safe: use it from the loop it was started on."""

    def __init__(self, target_host: str, target_port: int, *, host: str = HOST) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._latency = 0.0
        self._dropping = False
        self._flowing = asyncio.Event()  # cleared while black-holed
        self._flowing.set()
        self.accepted = 0  # connections accepted so far (a test can check reconnects)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> FaultProxy:
        """Listen on a free port of `host` (bound to port 0, so no other process can race)."""
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        return self

    async def stop(self) -> None:
        """Stop listening and reset every connection; waits for their tasks to end."""
        if self._server is not None:
            self._server.close()
        tasks = [connection.task for connection in self._connections if connection.task]
        for connection in list(self._connections):
            connection.reset()
        if tasks:
            await asyncio.wait(tasks, timeout=CALL_TIMEOUT)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------------------- switches

    def latency(self, seconds: float) -> None:
        self._latency = max(0.0, seconds)

    def drop(self) -> None:
        self._dropping = True
        for connection in list(self._connections):
            connection.reset()

    def blackhole(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._latency = 0.0
        self._dropping = False
        self._flowing.set()

    # ---------------------------------------------------------------------- forwarding

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._dropping:
            _reset(writer)
            return
        connection = _Connection(writer)
        connection.task = asyncio.current_task()
        self._connections.add(connection)
        try:
            await self._forward(connection, reader)
        except (asyncio.CancelledError, OSError, TimeoutError):
            pass  # reset by drop() or stop(), or an end that the other side will see
        finally:
            self._connections.discard(connection)
            writer.transport.abort()
            if connection.upstream is not None:
                connection.upstream.transport.abort()

    async def _forward(self, connection: _Connection, client_reader: asyncio.StreamReader) -> None:
        await self._flowing.wait()  # a black-holed connection never reaches the target
        async with asyncio.timeout(CONNECT_TIMEOUT):
            upstream_reader, upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        connection.upstream = upstream
        if self._dropping:  # drop() came while connecting
            connection.reset()
            return
        pumps = [
            asyncio.ensure_future(self._pump(client_reader, upstream)),
            asyncio.ensure_future(self._pump(upstream_reader, connection.client)),
        ]
        try:
            # One side closing ends the pair: the protocol has no use for half-closed sockets.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._flowing.wait()
            data = await reader.read(CHUNK)
            if not data:
                return
            if self._latency:
                await asyncio.sleep(self._latency)
            await self._flowing.wait()  # read before the black hole began: held as well
            writer.write(data)
            await writer.drain()


class ThreadedFaultProxy:
    """A `FaultProxy` on its own event loop in a daemon thread, driven from any thread.

    For sync tests, and for async tests that block their loop while traffic must still flow
    through the proxy. `start()` and `stop()` block; each switch returns once it has taken
    effect in the proxy's loop.
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = HOST) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proxy: FaultProxy | None = None

    def start(self) -> ThreadedFaultProxy:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"fault-proxy->{self.target_port}", daemon=True
        )
        self._thread.start()
        self._proxy = self._call(self._make())
        return self

    async def _make(self) -> FaultProxy:
        return await FaultProxy(self.target_host, self.target_port, host=self.host).start()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)

    def _switch(self, name: str, *args: float) -> None:
        proxy = self.proxy

        async def flip() -> None:
            getattr(proxy, name)(*args)

        self._call(flip())

    @property
    def proxy(self) -> FaultProxy:
        if self._proxy is None:
            raise RuntimeError("the proxy is not started")
        return self._proxy

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def address(self) -> tuple[str, int]:
        return self.proxy.address

    @property
    def accepted(self) -> int:
        return self.proxy.accepted

    def latency(self, seconds: float) -> None:
        self._switch("latency", seconds)

    def drop(self) -> None:
        self._switch("drop")

    def blackhole(self) -> None:
        self._switch("blackhole")

    def restore(self) -> None:
        self._switch("restore")

    def stop(self) -> None:
        """Stop the proxy, then its loop and thread; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self._proxy is not None:
                self._call(self._proxy.stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CALL_TIMEOUT)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = self._proxy = None
