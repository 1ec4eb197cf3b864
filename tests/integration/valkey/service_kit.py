"""What the tests of service processes with Valkey share: constants, an execution's
HTTP helpers, readiness and metrics readers. Their fixtures are in this folder's
conftest.py."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fault_proxy import ThreadedFaultProxy
from processes import wait_until  # noqa: F401 (re-exported)
from valkey_servers import ValkeyServer

SECRET = "valkey-service-processes-secret-40-chars"
USER = "local"  # embedded.userId's default: the owner of every variable here
FALLBACKS = "cronium_runtime_valkey_fallbacks_total"
OUTAGE_ANSWER_BOUND = 3.0  # seconds a request may take while Valkey is away (loaded CI)
# Seconds for a service to use Valkey again once it is back: the gate's longest pause
# between tries (5 s, which background pollers reach during an outage), plus a loaded
# CI machine's slack.
RECONNECT_BOUND = 10.0
LIMIT = 20

StartServer = Callable[..., Any]
RunCli = Callable[..., subprocess.CompletedProcess[str]]
StartValkeyServer = Callable[..., ValkeyServer]
StartFaultProxy = Callable[..., ThreadedFaultProxy]

assert len(SECRET) == 40


# --- helpers -------------------------------------------------------------------------------


def value_key(key: str, user: str = USER) -> str:
    """Where the service caches a variable: `cronium:var:{<len(user)>:<user>/<key>}` (the
    length keeps user "team" key "a/b" apart from user "team/a" key "b")."""
    return f"cronium:var:{{{len(user)}:{user}/{key}}}"


def cached_entry(raw: bytes | None) -> list[Any] | None:
    """A cache entry as JSON: [exists, cachedAt, value, updatedAt] (None: no entry)."""
    if raw is None:
        return None
    entry = json.loads(raw)
    assert isinstance(entry, list), raw
    return entry


def entry_in(server: ValkeyServer, key: str, **options: Any) -> list[Any] | None:
    """The cache entry of the local user's variable `key` in `server` (db 0 unless told)."""
    with server.client(**options) as client:
        return cached_entry(client.get(value_key(key)))


def timed(call: Callable[..., Any], *args: Any, **options: Any) -> tuple[Any, float]:
    """What `call(*args, **options)` answered, and the seconds it took."""
    started = time.monotonic()
    answer = call(*args, **options)
    return answer, time.monotonic() - started


@dataclass(frozen=True)
class Execution:
    """An execution of the embedded store and its token, driving any service process."""

    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def path(self, key: str | None = None) -> str:
        if key is None:
            return f"/executions/{self.id}/variables"
        return f"/executions/{self.id}/variables/{quote(key, safe='')}"

    def put(self, server: Any, key: str, value: Any, **options: Any) -> Any:
        return server.request(
            "PUT", self.path(key), body={"value": value}, headers=self.headers, **options
        )

    def get(self, server: Any, key: str, **options: Any) -> Any:
        return server.request("GET", self.path(key), headers=self.headers, **options)

    def delete(self, server: Any, key: str, **options: Any) -> Any:
        return server.request("DELETE", self.path(key), headers=self.headers, **options)

    def value(self, server: Any, key: str) -> Any:
        answer = self.get(server, key)
        assert answer.status == 200, (answer.status, answer.body)
        return answer.json()["data"]["value"]

    def listing(self, server: Any) -> list[str]:
        answer = server.request("GET", self.path(), headers=self.headers)
        assert answer.status == 200, (answer.status, answer.body)
        return [item["key"] for item in answer.json()["data"]]


def readiness(server: Any) -> tuple[int, dict[str, Any]]:
    answer = server.request("GET", "/health/ready")
    return answer.status, answer.json()


def is_ready(server: Any) -> bool:
    status, body = readiness(server)
    return status == 200 and body["status"] == "ready"


def fallbacks(server: Any) -> float:
    """`cronium_runtime_valkey_fallbacks_total`, summed over its operations (0 when absent)."""
    answer = server.request("GET", "/metrics")
    assert answer.status == 200
    total = 0.0
    for line in answer.body.decode().splitlines():
        found = re.fullmatch(rf"{FALLBACKS}(\{{[^}}]*\}})? (\S+)", line)
        if found:
            total += float(found.group(2))
    return total


def hammer(execution: Execution, servers: list[Any], count: int) -> list[Any]:
    """`count` requests as fast as they go, one after another, the servers taken in turn."""
    return [
        servers[index % len(servers)].request(
            "GET", f"/executions/{execution.id}/input", headers=execution.headers
        )
        for index in range(count)
    ]


def assert_shared_limit(answers: list[Any], limit: int = LIMIT) -> None:
    statuses = [answer.status for answer in answers]
    allowed = statuses.count(200)
    assert set(statuses) <= {200, 429}, statuses
    assert limit - 2 <= allowed <= limit + 2, f"{allowed} let through, one bucket of {limit}"
    for answer in answers:
        assert answer.headers["RateLimit-Policy"] == f'"exec";q={limit};w=60'
        if answer.status == 429:
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["code"] == "RATE_LIMITED"


def read_back_through_the_other(
    script: Execution,
    writer: Any,
    reader: Any,
    *,
    clients: int,
    rounds: int,
    prefix: str = "own",
) -> list[str]:
    """`clients` concurrent scripts, each owning one key: write it through `writer`, read it
    through `reader` at once, `rounds` times. A key has one writer, so any other value read
    back is a stale read."""

    def client(index: int) -> list[str]:
        key = f"{prefix}-{index}"
        stale = []
        for round_ in range(rounds):
            value = {"client": index, "round": round_}
            written = script.put(writer, key, value, timeout=15.0)
            assert written.status == 200, written.body
            seen = script.get(reader, key, timeout=15.0).json()["data"]["value"]
            if seen != value:
                stale.append(f"{key}: wrote {value}, then read {seen}")
        return stale

    for index in range(clients):  # every key cached first, as a running system would have it
        assert script.put(writer, f"{prefix}-{index}", None).status == 200
        assert script.value(reader, f"{prefix}-{index}") is None
    with ThreadPoolExecutor(max_workers=clients) as pool:
        return [line for lines in pool.map(client, range(clients)) for line in lines]
