"""One Valkey client per process, for a standalone server, a cluster or a sentinel set-up."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from valkey.asyncio import BlockingConnectionPool, Valkey
from valkey.asyncio.client import Pipeline
from valkey.asyncio.cluster import ValkeyCluster
from valkey.asyncio.connection import AbstractConnection
from valkey.asyncio.retry import Retry
from valkey.asyncio.sentinel import Sentinel, SentinelConnectionPool
from valkey.backoff import NoBackoff
from valkey.exceptions import ConnectionError as ValkeyConnectionError
from valkey.exceptions import TimeoutError as ValkeyTimeoutError

ValkeyClient = Valkey | ValkeyCluster


@dataclass(frozen=True, kw_only=True)
class ValkeyOptions:
    url: str
    mode: str = "standalone"  # or "cluster", "sentinel"
    password: str | None = None
    db: int = 0
    pool_size: int = 10
    connect_timeout: float = 2.0
    command_timeout: float = 0.5
    sentinel_master: str = "mymaster"


def create_client(options: ValkeyOptions) -> ValkeyClient:
    """valkey-py's own client for the mode: pools, cluster routing and sentinel discovery are
    the library's. Every command waits at most `command_timeout`.

    A pooled connection that a restarted server closed fails its next command at once; one
    retry on a fresh connection hides that, and adds nothing to a timeout's bound (timeouts
    are not retried). TLS options valkey-py takes (`ssl_ca_certs`, `ssl_certfile`, ...) go in
    the URL's query.
    """
    common: dict[str, Any] = {
        "socket_connect_timeout": options.connect_timeout,
        "retry": Retry(NoBackoff(), 1),
        "retry_on_error": [ValkeyConnectionError],
    }
    if options.password:
        common["password"] = options.password
    if options.mode == "cluster":
        # A cluster has one database; valkey-py refuses `db` for it. Its per-node pools
        # cannot wait for a free connection (past the limit they fail, which would look
        # like an outage), so they are left unbounded: concurrency is the workers' own.
        # Its commands keep valkey-py's own `socket_timeout` (a bound per send and per read).
        cluster: ValkeyCluster = ValkeyCluster.from_url(
            options.url, socket_timeout=options.command_timeout, **common
        )
        return cluster
    if options.mode == "sentinel":
        return _sentinel_primary(options, common)
    # A pool that waits for a free connection: more concurrent commands than pool_size wait
    # rather than fail as if Valkey were down. Getting a connection is bounded like making
    # one (connect_timeout): waiting for a busy pool is this process's load, not Valkey's.
    pool = _HandOffPool.from_url(
        options.url,
        db=options.db,
        max_connections=options.pool_size,
        timeout=options.connect_timeout,
        command_timeout=options.command_timeout,
        socket_timeout=None,  # valkey-py's default is 5 s; the deadline bounds each command
        **common,
    )
    standalone: Valkey = _DeadlineValkey.from_pool(pool)
    return standalone


# Why the standalone and sentinel clients are subclasses (measured in docs/benchmarks.md,
# "What a Valkey round trip costs the service"): with `socket_timeout` set, valkey-py sends
# each command under `asyncio.wait_for`, which on Python 3.11 runs it in a task of its own,
# and reads it under a second timeout; its blocking pool takes an `asyncio.Condition`, a
# timeout and a socket check (`can_read_destructive`, itself under a timeout) per checkout.
# Here `socket_timeout` is unset and each command's send and reply run under one
# `asyncio.timeout`, which makes no task (the one retry on a connection a restarted server
# closed gets one of its own, as it got its own `socket_timeout`s before; a timeout is not
# retried). New connections are bounded by the pool. When the deadline expires,
# valkey-py's own handlers (`send_packed_command`,
# `read_response`: any BaseException, cancellation included) disconnect the connection, so
# it is never reused with a reply still unread; the next checkout connects anew.


class _HandOffPool(BlockingConnectionPool):
    """A blocking pool whose checkout of a free, connected connection awaits nothing.

    - A free connection that is connected and has nothing unread is handed out at once;
      anything else (none free, not connected, something to read, the server's end closed)
      takes valkey-py's path: connect, check, reconnect once.
    - With every connection in use, callers wait in turn (first come, first served) and a
      released connection goes straight to the first of them, instead of a condition that
      wakes a waiter to compete for it.
    - Waiting and connecting together are bounded by `timeout`.
    """

    def __init__(self, *args: Any, command_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command_timeout = command_timeout
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()

    async def get_connection(self, command_name: Any, *keys: Any, **options: Any) -> Any:
        if self._available_connections:
            connection = self._available_connections.pop()
            self._in_use_connections.add(connection)
            if _ready(connection):
                return connection
        else:
            connection = None
        try:
            async with asyncio.timeout(self.timeout):
                if connection is None:
                    connection = await self._next_free()
                    if _ready(connection):
                        return connection
                await self.ensure_connection(connection)
        except BaseException as error:
            if connection is not None:
                await self.release(connection)
            if isinstance(error, TimeoutError):  # asyncio's, from the `timeout` above
                if connection is None:
                    raise ValkeyConnectionError("No connection available.") from error
                raise ValkeyTimeoutError("Timeout connecting to server") from error
            raise
        return connection

    async def _next_free(self) -> AbstractConnection:
        """A new connection while the pool has room, else the next one released."""
        if len(self._in_use_connections) < self.max_connections:
            connection: AbstractConnection = self.make_connection()  # type: ignore[no-untyped-call]
            self._in_use_connections.add(connection)
            return connection
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._hand_over(waiter.result())  # it came as the wait ended: pass it on
            elif waiter in self._waiters:  # a release may have dropped it already
                self._waiters.remove(waiter)
            raise

    async def release(self, connection: AbstractConnection) -> None:
        self._hand_over(connection)

    def _hand_over(self, connection: AbstractConnection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)  # still in use, now by the waiter
                return
        self._in_use_connections.remove(connection)
        self._available_connections.append(connection)


def _ready(connection: AbstractConnection) -> bool:
    """What valkey-py's `ensure_connection` checks (connected, nothing buffered to read, the
    server's end not closed), without awaiting: it looks into the connection's stream and
    its pure-Python parser, and says "not ready" (the full check) for anything else."""
    reader = connection._reader  # valkey-py's stream of the connection
    parser = connection._parser
    if reader is None or not getattr(parser, "_connected", False):
        return False
    buffered = getattr(parser, "_buffer", None)
    pending = getattr(reader, "_buffer", None)
    if buffered is None or pending is None:
        return False  # another parser (libvalkey) or stream: let valkey-py check it
    return not buffered and not pending and not reader.at_eof()


class _CommandDeadline:
    """One `asyncio.timeout` of the pool's `command_timeout` around each attempt of a
    command (its send and its reply) and of a pipeline; a mixin of the clients below."""

    async def _send_command_parse_response(
        self, conn: AbstractConnection, command_name: Any, *args: Any, **options: Any
    ) -> Any:
        return await self._bounded(
            super()._send_command_parse_response(conn, command_name, *args, **options)  # type: ignore[misc]
        )

    async def _execute_transaction(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super()._execute_transaction(*args, **kwargs))  # type: ignore[misc]

    async def _execute_pipeline(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super()._execute_pipeline(*args, **kwargs))  # type: ignore[misc]

    async def _bounded(self, work: Any) -> Any:
        timeout: float = self.connection_pool.command_timeout  # type: ignore[attr-defined]
        try:
            async with asyncio.timeout(timeout):
                return await work
        except TimeoutError:  # asyncio's: valkey-py's own `TimeoutError` is no subclass of it
            raise ValkeyTimeoutError(f"Timeout: no reply from Valkey within {timeout}s") from None


class _DeadlinePipeline(_CommandDeadline, Pipeline):  # type: ignore[misc]
    pass


class _DeadlineValkey(_CommandDeadline, Valkey):  # type: ignore[misc]
    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _DeadlinePipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


class _HandOffSentinelPool(SentinelConnectionPool, _HandOffPool):
    """The sentinel's pool of connections to the primary, waiting for a free one (within
    `timeout`) rather than failing as if Valkey were down."""


class _SentinelPrimary(_DeadlineValkey):
    """The primary's client, which also closes the sentinels' connections when closed."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            await sentinel.aclose()


def _sentinel_primary(options: ValkeyOptions, common: dict[str, Any]) -> Valkey:
    """`cache.url` names the sentinels (`valkey://:password@s1:26379,s2:26379/0?...`); the
    primary they report for `sentinelMaster` is the one used, followed through a failover.
    The URL's password, database and query (TLS options) apply to the primary."""
    parts = urlsplit(options.url)
    credentials, _, addresses = parts.netloc.rpartition("@")
    sentinels = []
    for address in addresses.split(","):
        host, _, port = address.rpartition(":")
        sentinels.append((host.strip("[]") or "127.0.0.1", int(port or 26379)))
    connection: dict[str, Any] = dict(common)
    connection.update(parse_qsl(parts.query))
    if parts.scheme in {"valkeys", "rediss"}:
        connection["ssl"] = True
    if credentials and not options.password:
        connection["password"] = unquote(credentials.partition(":")[2])
    database = int(parts.path.strip("/") or options.db)
    # The sentinels' own clients are plain valkey-py ones, bounded by `socket_timeout`; the
    # primary's commands by their deadline (`_CommandDeadline`).
    sentinel_kwargs = {key: value for key, value in connection.items() if key != "password"}
    sentinel_kwargs["socket_timeout"] = options.command_timeout
    connection["socket_timeout"] = None
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        sentinel_kwargs=sentinel_kwargs,
        **connection,
    )
    primary: Valkey = sentinel.master_for(
        options.sentinel_master,
        valkey_class=_SentinelPrimary,
        connection_pool_class=_HandOffSentinelPool,
        db=database,
        max_connections=options.pool_size,
        timeout=options.connect_timeout,
        command_timeout=options.command_timeout,
    )
    return primary
