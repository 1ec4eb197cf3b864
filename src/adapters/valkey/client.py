"""One Valkey client per process, for a standalone server, a cluster or a sentinel set-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from valkey.asyncio import BlockingConnectionPool, Valkey
from valkey.asyncio.cluster import ValkeyCluster
from valkey.asyncio.retry import Retry
from valkey.asyncio.sentinel import Sentinel, SentinelConnectionPool
from valkey.backoff import NoBackoff
from valkey.exceptions import ConnectionError as ValkeyConnectionError

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
        "socket_timeout": options.command_timeout,
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
        cluster: ValkeyCluster = ValkeyCluster.from_url(options.url, **common)
        return cluster
    if options.mode == "sentinel":
        return _sentinel_primary(options, common)
    # A blocking pool: more concurrent commands than pool_size wait for a connection
    # rather than fail as if Valkey were down. Getting a connection is bounded like making
    # one (connect_timeout): waiting for a busy pool is this process's load, not Valkey's.
    pool = BlockingConnectionPool.from_url(
        options.url,
        db=options.db,
        max_connections=options.pool_size,
        timeout=options.connect_timeout,
        **common,
    )
    standalone: Valkey = Valkey.from_pool(pool)
    return standalone


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The sentinel's pool of connections to the primary, waiting for a free one (within
    `timeout`) rather than failing as if Valkey were down."""


class _SentinelPrimary(Valkey):
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
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        sentinel_kwargs={key: value for key, value in connection.items() if key != "password"},
        **connection,
    )
    primary: Valkey = sentinel.master_for(
        options.sentinel_master,
        valkey_class=_SentinelPrimary,
        connection_pool_class=_BlockingSentinelPool,
        db=database,
        max_connections=options.pool_size,
        timeout=options.connect_timeout,
    )
    return primary
