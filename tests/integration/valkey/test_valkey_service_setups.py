"""Valkey wired into `cronium-runtime serve` in its other set-ups (issue 4, "Integration"):
`serve --workers 2`, `requirepass` with a non-zero db, cluster mode, a sentinel (each also
under more concurrent scripts than its pool holds), and `valkeys://` against a TLS-only
server. The helpers and fixtures are those of
`test_valkey_service_processes.py`, whose docstring says how the processes are run.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import ANY
from urllib.parse import quote

import pytest
from processes import owner_of
from service_kit import (
    LIMIT,
    OUTAGE_ANSWER_BOUND,
    SECRET,
    Execution,
    RunCli,
    StartValkeyServer,
    assert_shared_limit,
    cached_entry,
    fallbacks,
    hammer,
    is_ready,
    read_back_through_the_other,
    readiness,
    timed,
    value_key,
    wait_until,
)
from valkey.cluster import ValkeyCluster as ClusterClient
from valkey_servers import HOST, ValkeyCluster, ValkeySentinel, ValkeyServer

# --- serve --workers N ---------------------------------------------------------------------

STARTED = re.compile(r"Started server process \[(\d+)\]")
REPO = Path(__file__).resolve().parents[3]


class Serve:
    """`cronium-runtime serve ARGS...` (the `start_server` fixture runs bare `serve`), its
    stderr in a file; requests go over `connect()`'s keep-alive connections."""

    def __init__(self, env: Mapping[str, str], folder: Path, *args: str) -> None:
        self.port = int(env["PORT"])
        folder.mkdir(parents=True, exist_ok=True)
        self.stderr_path = folder / "serve.stderr"
        script = Path(sys.executable).with_name("cronium-runtime")
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [str(script), "serve", *args],
                env=dict(env),
                cwd=REPO,  # as conftest's processes: coverage's relative `source` needs it
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=5.0)

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
            raise


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request on `connection`, which stays open (keep-alive) for the next."""
    sent = dict(headers or {})
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    connection.request(method, path, body=payload, headers=sent)
    answer = connection.getresponse()
    return Answer(answer.status, answer.headers, answer.read())


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(env: Mapping[str, str], *args: str) -> Serve:
        serve = Serve(env, tmp_path / f"serve-{len(started)}", *args)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        if serve.process.poll() is None:
            assert serve.stop() == 0, serve.stderr[-2000:]


def test_serve_with_two_workers_and_valkey_answers_from_both_as_one(
    start_serve: Callable[..., Serve],
    environment: dict[str, str],
    store_path: Path,
    new_execution: Callable[[], Execution],
    valkey_server: ValkeyServer,
) -> None:
    env = {
        **environment,
        "JWT_SECRET": SECRET,
        "STORE_PATH": str(store_path),
        "VALKEY_URL": valkey_server.url(),
        "VALKEY_READ_TIMEOUT": "200ms",
    }
    serve = start_serve(env, "--workers", "2")
    script = new_execution()

    def both_started() -> bool:
        assert serve.process.poll() is None, serve.stderr
        return serve.stderr.count("Application startup complete.") == 2

    assert wait_until(both_started, 15.0), serve.stderr
    pids = sorted({int(pid) for pid in STARTED.findall(serve.stderr)})
    assert len(pids) == 2, serve.stderr
    assert serve.process.pid not in pids

    # Keep-alive connections until each worker holds one (the kernel hands each accept to
    # one of them), then write through one worker's and read through the other's.
    connections: dict[int, http.client.HTTPConnection] = {}
    opened = []
    try:
        for _ in range(60):
            connection = serve.connect()
            opened.append(connection)
            assert exchange(connection, "GET", "/health/ready").json()["status"] == "ready"
            connections.setdefault(owner_of(connection, serve.port, pids), connection)
            if len(connections) == 2:
                break
        assert sorted(connections) == pids, "one worker answered every connection"
        first, second = (connections[pid] for pid in pids)
        for round_, (writer, reader) in enumerate([(first, second), (second, first)] * 3):
            answer = exchange(
                writer, "PUT", script.path("w"), body={"value": round_}, headers=script.headers
            )
            assert answer.status == 200
            answer = exchange(reader, "GET", script.path("w"), headers=script.headers)
            assert answer.json()["data"]["value"] == round_
        assert exchange(first, "DELETE", script.path("w"), headers=script.headers).status == 200
        assert exchange(second, "GET", script.path("w"), headers=script.headers).status == 404
        for connection in (first, second):
            status = exchange(connection, "GET", "/health/ready")
            assert status.status == 200
            assert status.json()["checks"]["valkey"]["status"] == "up"
    finally:
        for connection in opened:
            connection.close()

    assert serve.stop() == 0, serve.stderr[-2000:]
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
    assert (
        sorted(int(pid) for pid in re.findall(r"Finished server process \[(\d+)\]", serve.stderr))
        == pids
    )


def test_serve_with_two_workers_without_valkey_exits_1_with_one_line(
    run_cli: RunCli, cli_env: dict[str, str]
) -> None:
    done = run_cli(cli_env, "serve", "--workers", "2")

    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cronium-runtime: ")
    assert "Valkey" in lines[0]
    assert "Traceback" not in done.stderr


# --- password, db, cluster, sentinel, TLS ---------------------------------------------------


def test_a_password_and_a_nonzero_db_are_used_and_a_wrong_password_degrades(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_server_factory: StartValkeyServer,
) -> None:
    password = "pa55/word:with@odd#chars"
    server = valkey_server_factory(password=password)
    plain_url = f"valkey://{HOST}:{server.port}"
    right = service(plain_url, VALKEY_PASSWORD=password, VALKEY_DB="3")
    in_url = service(server.url(db=3))  # valkey://:<percent-encoded password>@host:port/3
    wrong = service(plain_url, VALKEY_PASSWORD="not-the-password", VALKEY_DB="3")
    script = new_execution()

    assert is_ready(right)
    assert is_ready(in_url)
    assert script.put(right, "in-db-3", "yes").status == 200
    assert script.value(in_url, "in-db-3") == "yes"
    with server.client(db=3) as db3, server.client(db=0) as db0:
        assert cached_entry(db3.get(value_key("in-db-3"))) == [True, ANY, "yes", ANY]
        assert db3.keys("cronium:rl:*")  # the limiter's bucket is there too
        assert db0.keys("cronium:*") == []
    assert fallbacks(right) == fallbacks(in_url) == 0

    # A wrong password: degraded with Valkey down and why, scripts answered from the store.
    status, body = readiness(wrong)
    assert status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["valkey"]["status"] == "down"
    assert "password" in body["checks"]["valkey"]["error"].lower()
    (answer, took) = timed(script.get, wrong, "in-db-3")
    assert answer.status == 200
    assert answer.json()["data"]["value"] == "yes"
    assert took < OUTAGE_ANSWER_BOUND
    assert script.put(wrong, "in-db-3", "from the store").status == 200
    assert fallbacks(wrong) > 0
    # No process writes the password to its logs.
    assert password not in right.stderr
    assert password not in in_url.stderr
    assert "not-the-password" not in wrong.stderr


def test_cluster_mode_runs_the_cache_the_lock_and_the_limiter(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    store_value: Callable[[str], Any],
    valkey_cluster: ValkeyCluster,
) -> None:
    cluster = {"VALKEY_MODE": "cluster", "RATE_LIMIT_PER_MIN": str(LIMIT)}
    a = service(valkey_cluster.url(0), **cluster)
    b = service(valkey_cluster.url(2), **cluster)
    # Three executions, three buckets of LIMIT: the first two stay below theirs.
    script, writers, limited = new_execution(), new_execution(), new_execution()
    assert is_ready(a)
    assert is_ready(b)

    # The cache, across the two processes: keys on different slots, so on different nodes.
    keys = [f"cluster-{index}" for index in range(6)]
    for key in keys:
        assert script.get(b, key).status == 404
        assert script.put(a, key, {"key": key}).status == 200
        assert script.value(b, key) == {"key": key}
    with ClusterClient(host=HOST, port=valkey_cluster.ports[1], socket_timeout=2) as client:
        slots = {client.keyslot(value_key(key)) for key in keys}
        assert len({client.get_node_from_key(value_key(key)).port for key in keys}) > 1
        assert len(slots) == len(keys)
        for key in keys:
            assert cached_entry(client.get(value_key(key))) == [True, ANY, {"key": key}, ANY]

    # The lock (a Lua script on the key's node): concurrent writes through both processes.
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(
            pool.map(lambda index: writers.put((a, b)[index % 2], "cluster-0", index), range(10))
        )
    assert [answer.status for answer in answers] == [200] * 10
    final = store_value("cluster-0")
    assert writers.value(a, "cluster-0") == writers.value(b, "cluster-0") == final

    # The limiter: one bucket for the two processes.
    assert_shared_limit(hammer(limited, [a, b], 60))
    assert fallbacks(a) == fallbacks(b) == 0


def test_sentinel_mode_finds_the_primary_and_caches_there(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_sentinel: ValkeySentinel,
) -> None:
    host, port = valkey_sentinel.sentinel_address
    sentinel = {"VALKEY_MODE": "sentinel", "VALKEY_SENTINEL_MASTER": "mymaster"}
    a = service(f"valkey://{host}:{port}", **sentinel)
    b = service(f"valkey://{host}:{port}", **sentinel)
    script = new_execution()

    assert is_ready(a)
    assert script.put(a, "via-sentinel", [1, 2, 3]).status == 200
    assert script.value(b, "via-sentinel") == [1, 2, 3]
    assert script.delete(b, "via-sentinel").status == 200
    assert script.get(a, "via-sentinel").status == 404
    assert script.put(b, "via-sentinel", "again").status == 200
    assert script.value(a, "via-sentinel") == "again"
    with valkey_sentinel.primary.client() as primary:
        assert cached_entry(primary.get(value_key("via-sentinel"))) == [True, ANY, "again", ANY]
    assert fallbacks(a) == fallbacks(b) == 0


def test_valkeys_against_a_tls_only_server_with_the_ca_in_the_url(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_server_factory: StartValkeyServer,
) -> None:
    """The service has no setting of its own for the CA to trust; valkey-py's URL query
    parameters (`ssl_ca_certs`, `ssl_cert_reqs`) reach the client through VALKEY_URL."""
    server = valkey_server_factory(tls_only=True)
    assert server.tls_files is not None
    url = server.url()
    assert url.startswith("valkeys://")
    ca = quote(str(server.tls_files.ca_cert), safe="")
    trusting = service(f"{url}?ssl_ca_certs={ca}&ssl_cert_reqs=required")
    untrusting = service(url)  # the system's CAs only: the test CA is not among them
    script = new_execution()

    status, body = readiness(trusting)
    assert (status, body["status"]) == (200, "ready"), body
    assert script.put(trusting, "over-tls", "secret").status == 200
    assert script.value(trusting, "over-tls") == "secret"
    with server.client() as client:
        assert cached_entry(client.get(value_key("over-tls"))) == [True, ANY, "secret", ANY]
    assert fallbacks(trusting) == 0

    # Without the CA the certificate is refused (verification is on), and the store answers.
    status, body = readiness(untrusting)
    assert (status, body["status"]) == (200, "degraded"), body
    assert body["checks"]["valkey"]["status"] == "down"
    assert "certificate" in body["checks"]["valkey"]["error"].lower()
    assert script.value(untrusting, "over-tls") == "secret"


def test_cluster_mode_under_more_concurrent_requests_than_the_pool_holds(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_cluster: ValkeyCluster,
) -> None:
    small = {"VALKEY_MODE": "cluster", "VALKEY_POOL_SIZE": "2"}  # per node, in cluster mode
    a = service(valkey_cluster.url(0), **small)
    b = service(valkey_cluster.url(1), **small)
    script = new_execution()

    stale = read_back_through_the_other(script, a, b, clients=30, rounds=3, prefix="load")

    assert stale == []
    assert (fallbacks(a), fallbacks(b)) == (0, 0)


def test_sentinel_mode_under_more_concurrent_requests_than_the_pool_holds(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_sentinel: ValkeySentinel,
) -> None:
    host, port = valkey_sentinel.sentinel_address
    small = {"VALKEY_MODE": "sentinel", "VALKEY_POOL_SIZE": "2"}
    a = service(f"valkey://{host}:{port}", **small)
    b = service(f"valkey://{host}:{port}", **small)
    script = new_execution()

    stale = read_back_through_the_other(script, a, b, clients=30, rounds=3, prefix="load")

    assert stale == []
    assert (fallbacks(a), fallbacks(b)) == (0, 0)
