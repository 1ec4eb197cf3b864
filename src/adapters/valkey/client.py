"""One Valkey client per process, for a standalone server, a cluster or a sentinel set-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from valkey.asyncio import Valkey
from valkey.asyncio.cluster import ValkeyCluster
from valkey.asyncio.sentinel import Sentinel

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
    the library's. Every command waits at most `command_timeout`."""
    common: dict[str, Any] = {
        "socket_timeout": options.command_timeout,
        "socket_connect_timeout": options.connect_timeout,
    }
    if options.password:
        common["password"] = options.password
    if options.mode == "cluster":
        # A cluster has one database; valkey-py refuses `db` for it.
        cluster: ValkeyCluster = ValkeyCluster.from_url(
            options.url, max_connections=options.pool_size, **common
        )
        return cluster
    if options.mode == "sentinel":
        return _sentinel_primary(options, common)
    standalone: Valkey = Valkey.from_url(
        options.url, db=options.db, max_connections=options.pool_size, **common
    )
    return standalone


def _sentinel_primary(options: ValkeyOptions, common: dict[str, Any]) -> Valkey:
    """`cache.url` names the sentinels (`valkey://host:26379,host2:26379`); the primary they
    report for `sentinelMaster` is the one used, and followed through a failover."""
    parts = urlsplit(options.url)
    sentinels = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = address.rpartition(":")
        sentinels.append((host.strip("[]") or "127.0.0.1", int(port or 26379)))
    tls = {"ssl": True} if parts.scheme in {"valkeys", "rediss"} else {}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        sentinel_kwargs={
            "socket_timeout": options.command_timeout,
            "socket_connect_timeout": options.connect_timeout,
            **tls,
        },
        **common,
        **tls,
    )
    primary: Valkey = sentinel.master_for(
        options.sentinel_master, db=options.db, max_connections=options.pool_size
    )
    return primary
