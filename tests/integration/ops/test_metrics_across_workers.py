"""`serve` with two workers: `/metrics` tells the whole server's counts exactly, whichever
worker answers the scrape (issue 9, "Running well").

The processes are real: two workers over a real valkey-server, executions made by the CLI
in the store they share. The mix goes over one keep-alive connection per worker (found
through /proc), so that each worker answers part of it; every status the test received is
what the metrics must count, by route template, method and status.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops_kit import (
    HOST,
    SECRET,
    STARTED,
    Execution,
    exchange,
    one_connection_per_worker,
    parse_metrics,
    series,
    single,
    wait_until,
    worker_files,
)
from valkey_servers import ValkeyServer

REQUESTS = "cronium_runtime_http_requests_total"
LATENCY_COUNT = "cronium_runtime_http_request_duration_seconds_count"
INPUT = "/executions/{execution_id}/input"
VARIABLE = "/executions/{execution_id}/variables/{key}"
LIMIT = 20  # requests per execution and minute
USER = "local"  # embedded.userId: the owner of every variable here


def lock_key(key: str, user: str = USER) -> str:
    """The Valkey lock a variable's writer holds (SPEC section 7), as the service names it."""
    return f"cronium:lock:{{{len(user)}:{user}/{key}}}"


def without_scrapes(counts: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    """The counts less those of `/metrics` itself, which every scrape adds to."""
    return Counter({labels: value for labels, value in counts.items() if labels[0] != "/metrics"})


def test_two_workers_count_each_status_of_a_mixed_load_exactly(
    start_server: Callable[..., Any],
    valkey_server: ValkeyServer,
    store_path: Path,
    new_execution: Callable[[], Execution],
    tmp_path: Path,
) -> None:
    metrics_folder = tmp_path / "metrics"
    server = start_server(
        JWT_SECRET=SECRET,
        STORE_PATH=str(store_path),
        VALKEY_URL=valkey_server.url(),
        WORKERS="2",
        RATE_LIMIT_PER_MIN=str(LIMIT),
        MAX_BODY_SIZE="1KiB",
        READ_TIMEOUT="1500ms",  # with WRITE_TIMEOUT: how long a write waits for a busy lock
        WRITE_TIMEOUT="1500ms",
        # Not the bare PROMETHEUS_MULTIPROC_DIR, which prometheus-client would read itself:
        # only serve's export puts it where the library looks.
        RUNTIME_PROMETHEUS_MULTIPROC_DIR=str(metrics_folder),
    )
    assert wait_until(lambda: server.stderr.count("Application startup complete.") == 2, 15.0), (
        server.stderr
    )
    pids = sorted({int(pid) for pid in STARTED.findall(server.stderr)})
    assert len(pids) == 2, server.stderr
    main, other, limited = new_execution(), new_execution(), new_execution()
    with valkey_server.client() as client:  # another writer holds `busy` for a minute
        client.set(lock_key("busy"), "another-writer", px=60_000)

    held, opened = one_connection_per_worker(server.port, pids)
    try:
        before = parse_metrics(exchange(held[pids[0]], "GET", "/metrics").body.decode())
        expected: Counter[tuple[str, ...]] = Counter()
        codes: Counter[str] = Counter()

        def send(
            connection: http.client.HTTPConnection,
            method: str,
            path: str,
            route: str,
            status: int,
            **options: Any,
        ) -> None:
            answer = exchange(connection, method, path, **options)
            assert answer.status == status, (method, path, answer.status, answer.body)
            if status >= 400:
                codes[answer.json()["code"]] += 1
            expected[(route, method, str(status))] += 1

        forged = {"Authorization": "Bearer not.a.token"}
        for index, pid in enumerate(pids):
            connection = held[pid]
            own = f"/executions/{main.id}"
            send(connection, "GET", f"{own}/input", INPUT, 200, headers=main.headers)
            send(
                connection,
                "PUT",
                f"{own}/variables/k{index}",
                VARIABLE,
                200,
                body={"value": index},
                headers=main.headers,
            )
            send(
                connection, "GET", f"{own}/variables/k{index}", VARIABLE, 200, headers=main.headers
            )
            send(
                connection,
                "GET",
                f"{own}/variables/none{index}",
                VARIABLE,
                404,
                headers=main.headers,
            )
            send(connection, "GET", f"{own}/input", INPUT, 401)
            send(connection, "GET", f"{own}/input", INPUT, 401, headers=forged)
            send(
                connection, "GET", f"/executions/{other.id}/input", INPUT, 403, headers=main.headers
            )
            send(connection, "GET", f"/executions/{main.id}/nowhere/{index}", "unmatched", 404)
            send(connection, "DELETE", "/health", "/health", 405)
            send(
                connection,
                "PUT",
                f"{own}/variables/busy",
                VARIABLE,
                503,
                body={"value": index},
                headers=main.headers,
            )
            # Last on this connection: the server may close it after refusing the body.
            send(
                connection,
                "PUT",
                f"{own}/variables/big",
                VARIABLE,
                413,
                body={"value": "x" * 2048},
                headers=main.headers,
            )
        # One bucket for the whole server, whichever worker answers: 429 once it is empty.
        limited_statuses = []
        for index in range(LIMIT + 5):
            connection = held[pids[index % 2]]
            path = f"/executions/{limited.id}/input"
            answer = exchange(connection, "GET", path, headers=limited.headers)
            limited_statuses.append(answer.status)
            expected[(INPUT, "GET", str(answer.status))] += 1
            if answer.status == 429:
                codes[answer.json()["code"]] += 1
        assert set(limited_statuses) == {200, 429}, limited_statuses

        # Every worker answers a scrape (the held connections), and so may any other.
        scrape_connections = [held[pid] for pid in pids] + [
            http.client.HTTPConnection(HOST, server.port, timeout=10.0) for _ in range(4)
        ]
        opened += scrape_connections[len(pids) :]
        scrapes = [
            parse_metrics(exchange(connection, "GET", "/metrics").body.decode())
            for connection in scrape_connections
        ]
    finally:
        for connection in opened:
            connection.close()

    assert {status for (_, _, status) in expected} == {
        "200", "401", "403", "404", "405", "413", "429", "503"
    }  # fmt: skip
    refused = codes["RATE_LIMITED"]
    assert codes == Counter(
        {
            "TOKEN_MISSING": 2,
            "TOKEN_INVALID": 2,
            "EXECUTION_MISMATCH": 2,
            "VARIABLE_NOT_FOUND": 2,
            "NOT_FOUND": 2,
            "METHOD_NOT_ALLOWED": 2,
            "DEADLINE_EXCEEDED": 2,  # the busy variable's lock was never free
            "BODY_TOO_LARGE": 2,
            "RATE_LIMITED": refused,
        }
    )
    by_route_and_method: Counter[tuple[str, ...]] = Counter()
    for (route, method, _), count in expected.items():
        by_route_and_method[(route, method)] += count
    baseline = series(before, REQUESTS, "route", "method", "status")
    for samples in scrapes:
        counted = without_scrapes(series(samples, REQUESTS, "route", "method", "status"))
        assert counted - baseline == expected
        latency = series(samples, LATENCY_COUNT, "route", "method")
        assert without_scrapes(latency) - series(before, LATENCY_COUNT, "route", "method") == (
            by_route_and_method
        )
        auth_failures = series(samples, "cronium_runtime_auth_failures_total", "code")
        assert auth_failures == Counter({("TOKEN_MISSING",): 2, ("TOKEN_INVALID",): 2})
        assert single(samples, "cronium_runtime_rate_limit_rejections_total") == refused
        lookups = series(samples, "cronium_runtime_cache_lookups_total", "kind", "result")
        input_reads = expected[(INPUT, "GET", "200")]
        assert lookups == Counter(
            {
                ("variable", "hit"): 2,  # each worker reads back what it wrote
                ("variable", "miss"): 2,  # a key never set, asked of the store once
                ("context", "miss"): 2,  # the first read of each execution's input
                ("context", "hit"): input_reads - 2,
            }
        )
        # The scrape itself is the one request in flight, in one worker of the two.
        assert single(samples, "cronium_runtime_http_requests_in_flight") == 1
        build = samples["cronium_runtime_build_info"]
        assert len(build) == 1
        assert build[0][1] == 1
        # Every gauge is added up by its mode, never reported per process.
        assert not any("pid" in labels for name in samples for labels, _ in samples[name])
    routes = {labels["route"] for scrape in scrapes for labels, _ in scrape[REQUESTS]}
    assert routes == {"/health", "/metrics", INPUT, VARIABLE, "unmatched"}
    assert not any(execution.id in route for route in routes for execution in (main, limited))

    # Each worker answered its part; their own files add up to what a scrape tells.
    per_worker = worker_files(metrics_folder)
    assert set(pids) <= set(per_worker)
    mine = [
        without_scrapes(series(per_worker[pid], REQUESTS, "route", "method", "status"))
        for pid in pids
    ]
    assert all(counts[(INPUT, "GET", "200")] > 0 for counts in mine)
    together = sum(
        (
            without_scrapes(series(samples, REQUESTS, "route", "method", "status"))
            for samples in per_worker.values()
        ),
        Counter(),
    )
    assert together == without_scrapes(series(scrapes[-1], REQUESTS, "route", "method", "status"))

    assert server.stop() == 0, server.stderr[-2000:]
    assert metrics_folder.is_dir()  # a configured folder is the operator's: left in place


def test_a_worker_that_dies_leaves_its_counts_and_takes_its_requests_in_flight_along(
    start_server: Callable[..., Any],
    valkey_server: ValkeyServer,
    store_path: Path,
    new_execution: Callable[[], Execution],
    tmp_path: Path,
) -> None:
    metrics_folder = tmp_path / "metrics"
    server = start_server(
        JWT_SECRET=SECRET,
        STORE_PATH=str(store_path),
        VALKEY_URL=valkey_server.url(),
        WORKERS="2",
        DRAIN_DELAY="5s",  # the survivor keeps answering this long once told to stop
        READ_TIMEOUT="15s",  # with WRITE_TIMEOUT: how long the write waits for the lock
        WRITE_TIMEOUT="15s",
        RUNTIME_PROMETHEUS_MULTIPROC_DIR=str(metrics_folder),
    )
    assert wait_until(lambda: server.stderr.count("Application startup complete.") == 2, 15.0), (
        server.stderr
    )
    pids = sorted({int(pid) for pid in STARTED.findall(server.stderr)})
    script = new_execution()
    with valkey_server.client() as client:
        client.set(lock_key("busy"), "another-writer", px=60_000)
    held, opened = one_connection_per_worker(server.port, pids)
    doomed, survivor = pids
    outcome: list[object] = []

    def write_behind_the_lock() -> None:
        try:
            outcome.append(
                exchange(
                    held[doomed],
                    "PUT",
                    f"/executions/{script.id}/variables/busy",
                    body={"value": 1},
                    headers=script.headers,
                )
            )
        except (OSError, http.client.HTTPException) as error:
            outcome.append(error)

    def in_flight() -> float:
        scrape = exchange(held[survivor], "GET", "/metrics").body.decode()
        return single(parse_metrics(scrape), "cronium_runtime_http_requests_in_flight")

    writer = threading.Thread(target=write_behind_the_lock)
    writer.start()
    try:
        assert wait_until(lambda: in_flight() == 2, 10.0)  # the scrape and the waiting write
        health_before = series(
            parse_metrics(exchange(held[survivor], "GET", "/metrics").body.decode()),
            REQUESTS,
            "route",
            "method",
            "status",
        )[("/health", "GET", "200")]

        os.kill(doomed, signal.SIGKILL)

        # serve marks it dead: its request in flight is no longer counted, while the
        # survivor, draining, still answers.
        assert wait_until(lambda: in_flight() == 1, 4.0)
        samples = parse_metrics(exchange(held[survivor], "GET", "/metrics").body.decode())
    finally:
        writer.join(10.0)
        for connection in opened:
            connection.close()

    [lost] = outcome
    assert isinstance(lost, (OSError, http.client.HTTPException))
    # Its counters stay in the totals: a total never goes back.
    health = series(samples, REQUESTS, "route", "method", "status")[("/health", "GET", "200")]
    assert health == health_before
    assert worker_files(metrics_folder)[doomed][REQUESTS]
    server.returncode = server.process.wait(20.0)
    assert server.returncode == 1  # a worker stopped on its own
    assert "a worker stopped on its own" in server.stderr
