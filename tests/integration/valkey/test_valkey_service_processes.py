"""Valkey wired into real `cronium-runtime serve` processes (issue 4, "Integration"): two
processes on one store and one Valkey, concurrent writes, the shared limit, Valkey away and
back. The other set-ups (workers, password and db, cluster, sentinel, TLS) are in
`test_valkey_service_setups.py`, which takes its helpers and fixtures from here.

Every service is a process started by the test (`start_server` of
`tests/integration/conftest.py`) with a bare environment (PATH, HOME and XDG_DATA_HOME in
tmp_path, JWT_SECRET, VALKEY_URL, VALKEY_READ_TIMEOUT=200ms, PORT, DRAIN_DELAY=0s), talking to
real `valkey-server` processes (the fixtures of `conftest.py` beside this file), sometimes
through a `ThreadedFaultProxy`. Services that must form one system
share a `STORE_PATH`; executions are created with `cronium-runtime executions create --json`
on that store, and requests go over loopback HTTP. Every process is stopped at teardown
(SIGTERM, exit status 0 expected).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest.mock import ANY

from service_kit import (
    LIMIT,
    OUTAGE_ANSWER_BOUND,
    RECONNECT_BOUND,
    Execution,
    StartFaultProxy,
    assert_shared_limit,
    entry_in,
    fallbacks,
    hammer,
    is_ready,
    read_back_through_the_other,
    readiness,
    timed,
    wait_until,
)
from valkey_servers import HOST, ValkeyServer

# --- two processes, one store, one Valkey ---------------------------------------------------


def test_a_write_through_one_process_is_read_through_the_other_at_once(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    vars_cli: Callable[..., Any],
    store_value: Callable[[str], Any],
    valkey_server: ValkeyServer,
) -> None:
    a, b = service(valkey_server.url()), service(valkey_server.url())
    script = new_execution()

    # A miss through B (which caches that the variable is unset), then writes through
    # either process, each read through the other at once: never stale.
    assert script.get(b, "greeting").status == 404
    for round_ in range(6):
        writer, reader = (a, b) if round_ % 2 == 0 else (b, a)
        assert script.put(writer, "greeting", {"round": round_}).status == 200
        assert script.value(reader, "greeting") == {"round": round_}
    assert store_value("greeting") == {"round": 5}

    # B's read left the value in Valkey, under the user's key and not the execution's.
    entry = entry_in(valkey_server, "greeting")
    assert entry is not None
    assert entry[0] is True
    assert entry[2] == {"round": 5}

    # A hit: the store changed behind the services' back (the CLI without Valkey) is not
    # read, since B answers from Valkey; the CLI with Valkey writes through the cache, so
    # both processes see its write at once.
    assert vars_cli("set", "greeting", '"behind their back"').returncode == 0
    assert store_value("greeting") == "behind their back"
    assert script.value(b, "greeting") == {"round": 5}
    assert script.value(a, "greeting") == {"round": 5}
    done = vars_cli("set", "greeting", '"through the cache"', valkey_url=valkey_server.url())
    assert done.returncode == 0, done.stderr
    assert script.value(b, "greeting") == "through the cache"
    assert script.value(a, "greeting") == "through the cache"

    # A delete through A is a 404 through B at once, and leaves no value in Valkey.
    assert script.listing(b) == ["greeting"]
    assert script.delete(a, "greeting").status == 200
    assert script.get(b, "greeting").status == 404
    assert script.get(a, "greeting").status == 404
    assert script.delete(b, "greeting").status == 404
    assert script.listing(b) == []
    entry = entry_in(valkey_server, "greeting")
    assert entry is None or entry[0] is False

    # Valkey answered all along: no operation fell back to the store alone.
    assert fallbacks(a) == 0
    assert fallbacks(b) == 0
    assert is_ready(a)
    assert is_ready(b)


def test_fifty_concurrent_writes_through_two_processes_leave_the_stores_value_everywhere(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    store_value: Callable[[str], Any],
    valkey_server: ValkeyServer,
) -> None:
    a, b = service(valkey_server.url()), service(valkey_server.url())
    script = new_execution()
    assert script.put(a, "contended", "before").status == 200
    assert script.value(b, "contended") == "before"

    def write(index: int) -> Any:
        return script.put((a, b)[index % 2], "contended", {"writer": index}, timeout=15.0)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(write, range(50)))

    assert [answer.status for answer in answers] == [200] * 50, [a.body for a in answers]
    final = store_value("contended")
    assert final in [{"writer": index} for index in range(50)]
    through_a, through_b = script.get(a, "contended"), script.get(b, "contended")
    assert through_a.json()["data"] == through_b.json()["data"]
    assert through_a.json()["data"]["value"] == final
    entry = entry_in(valkey_server, "contended")
    assert entry is not None
    assert entry[2] == final
    # Every write took the lock and set the cache: none went to the store alone.
    assert fallbacks(a) == fallbacks(b) == 0


def test_two_processes_share_one_rate_limit(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_server: ValkeyServer,
) -> None:
    a = service(valkey_server.url(), RATE_LIMIT_PER_MIN=str(LIMIT))
    b = service(valkey_server.url(), RATE_LIMIT_PER_MIN=str(LIMIT))
    script = new_execution()

    answers = hammer(script, [a, b], 60)

    assert_shared_limit(answers)
    # Both processes let requests through and both refused: one bucket, not one each.
    assert {answer.status for answer in answers[0::2]} == {200, 429}
    assert {answer.status for answer in answers[1::2]} == {200, 429}
    assert fallbacks(a) == fallbacks(b) == 0


def test_more_concurrent_requests_than_the_pool_holds_never_fall_back_nor_read_stale(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_server: ValkeyServer,
) -> None:
    """30 scripts at once through a process whose pool holds 2 connections: commands wait
    for a free connection rather than fall back as if Valkey were down. (Before the blocking
    pool, even with the default 10 a PUT answered 200 through A and B then read the previous
    value: an exhausted pool was taken for an outage.)"""
    small = {"VALKEY_POOL_SIZE": "2"}
    a, b = service(valkey_server.url(), **small), service(valkey_server.url(), **small)
    script = new_execution()

    stale = read_back_through_the_other(script, a, b, clients=30, rounds=3)

    assert stale == []
    assert (fallbacks(a), fallbacks(b)) == (0, 0)


# --- Valkey away, and back -----------------------------------------------------------------


def test_valkey_stopped_mid_run_the_store_answers_and_a_restart_is_picked_up(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_server: ValkeyServer,
) -> None:
    a = service(valkey_server.url(), RATE_LIMIT_PER_MIN=str(LIMIT))
    b = service(valkey_server.url(), RATE_LIMIT_PER_MIN=str(LIMIT))
    script, after = new_execution(), new_execution()
    assert script.put(a, "during", "before the outage").status == 200
    assert script.value(b, "during") == "before the outage"
    assert is_ready(a)
    assert is_ready(b)

    valkey_server.stop()

    # Every request is answered from the store, each within a bound.
    for round_ in range(3):
        for writer, reader in ((a, b), (b, a)):
            value = {"outage": round_, "writer": writer.port}
            written, took = timed(script.put, writer, "during", value)
            assert written.status == 200, written.body
            assert took < OUTAGE_ANSWER_BOUND
            read, took = timed(script.get, reader, "during")
            assert read.status == 200
            assert read.json()["data"]["value"] == value
            assert took < OUTAGE_ANSWER_BOUND
    for server in (a, b):
        answer, took = timed(server.request, "GET", script.path(), headers=script.headers)
        assert answer.status == 200
        assert took < OUTAGE_ANSWER_BOUND
        (status, body), took = timed(readiness, server)
        assert took < OUTAGE_ANSWER_BOUND
        assert status == 200
        assert body["status"] == "degraded"
        assert body["checks"]["valkey"]["status"] == "down"
        assert body["checks"]["valkey"]["error"]
        assert body["checks"]["store"]["status"] == "up"
        assert fallbacks(server) > 0

    valkey_server.start()  # the same port, an empty server

    # Both processes use Valkey again without a restart ...
    assert wait_until(lambda: is_ready(a) and is_ready(b), RECONNECT_BOUND)
    assert script.value(a, "during") == script.value(b, "during") == {"outage": 2, "writer": b.port}
    # ... its cache ...
    assert script.put(b, "during", "after the outage").status == 200
    assert script.value(a, "during") == "after the outage"
    assert entry_in(valkey_server, "during") is not None
    # ... and its shared limit: one bucket for the two, not one each.
    assert_shared_limit(hammer(after, [a, b], 60))


def test_a_service_started_while_valkey_is_down_serves_and_uses_it_once_it_starts(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    tmp_path: Path,
) -> None:
    late = ValkeyServer(tmp_path / "late-valkey")  # its port chosen, nothing listening yet
    try:
        a = service(late.url())
        script = new_execution()
        status, body = readiness(a)
        assert (status, body["status"]) == (200, "degraded")
        assert body["checks"]["valkey"]["status"] == "down"
        answer, took = timed(script.put, a, "early", "from the store")
        assert answer.status == 200
        assert took < OUTAGE_ANSWER_BOUND

        late.start()

        assert wait_until(lambda: is_ready(a), RECONNECT_BOUND)
        assert script.value(a, "early") == "from the store"
        assert entry_in(late, "early") == [True, ANY, "from the store", ANY]
    finally:
        late.stop()


def test_a_write_cut_off_from_valkey_is_invalidated_for_the_others_once_it_is_back(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    store_value: Callable[[str], Any],
    valkey_server: ValkeyServer,
    fault_proxy_factory: StartFaultProxy,
) -> None:
    proxy = fault_proxy_factory(valkey_server.port)
    a = service(f"valkey://{HOST}:{proxy.port}")  # A reaches Valkey through the proxy
    b = service(valkey_server.url())  # B directly
    script = new_execution()
    assert script.put(b, "shared", "V1").status == 200
    assert script.value(b, "shared") == "V1"
    assert entry_in(valkey_server, "shared") == [True, ANY, "V1", ANY]

    proxy.blackhole()
    written, took = timed(script.put, a, "shared", "V2")
    assert written.status == 200, written.body
    assert took < OUTAGE_ANSWER_BOUND
    assert store_value("shared") == "V2"
    assert script.value(a, "shared") == "V2"  # A reads the store while Valkey is away
    # The window SPEC section 7 accepts: B still has V1 from Valkey while A is cut off.
    assert script.value(b, "shared") == "V1"

    proxy.restore()

    assert wait_until(lambda: script.value(b, "shared") == "V2", RECONNECT_BOUND), (
        "B still reads V1: A did not delete the entry it could not replace"
    )
    assert fallbacks(a) > 0
    assert fallbacks(b) == 0
    assert wait_until(lambda: is_ready(a), RECONNECT_BOUND)
    # And from now on A's writes go through Valkey again.
    assert script.put(a, "shared", "V3").status == 200
    assert script.value(b, "shared") == "V3"
