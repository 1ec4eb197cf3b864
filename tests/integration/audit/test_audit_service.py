"""The audit trail of real `serve` processes: every event reaches the sinks across backend
outages, Valkey restarts and outages, and a process killed while holding events; no raw
value appears anywhere in the trail.

Each operation is sent with its own `X-Request-ID`, which its event carries: the tests match
operations and events by it, and events among themselves by their `id`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit_kit import (
    DELIVERY_DEADLINE,
    EXECUTION,
    GROUP,
    SECRET,
    STREAM_KEY,
    Service,
    ThreadedBackend,
    files_text,
    leaked,
    stream_dump,
    wait_until,
)
from valkey_servers import ValkeyServer

MakeService = Callable[..., Service]
StartValkeyServer = Callable[..., ValkeyServer]


class Operations:
    """Mixed script operations, one audit event each: reads, writes, outputs, conditions and
    tool actions in dry run; the values written are markers that must never reach the trail."""

    KINDS = 10

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.request_ids: list[str] = []
        self.markers: list[str] = []

    def run(self, service: Service, n: int) -> Any:
        marker = f"raw-value-{uuid.uuid4().hex}"
        self.markers.append(marker)
        request_id = f"{self.tag}-{n}"
        self.request_ids.append(request_id)
        key = f"/executions/{EXECUTION}/variables/key-{n % 7}"
        method, path, body = {
            0: ("PUT", key, {"value": {"secret": marker, "n": n}}),
            1: ("GET", key, None),
            2: ("GET", f"/executions/{EXECUTION}/input", None),
            3: ("POST", f"/executions/{EXECUTION}/output", {"data": {"secret": marker}}),
            4: ("POST", "/tool-actions/execute", {
                "tool": "slack", "action": "send_message", "params": {"text": marker}}),
            5: ("GET", f"/executions/{EXECUTION}/context", None),
            6: ("POST", f"/executions/{EXECUTION}/condition", {"condition": n % 2 == 0}),
            7: ("GET", f"/executions/{EXECUTION}/variables", None),
            8: ("DELETE", key, None),
            9: ("POST", "/tool-actions/execute", {
                "tool": "webhook", "action": "post", "config": {"body": {"secret": marker}}}),
        }[n % self.KINDS]  # fmt: skip
        answer = service.call(method, path, body, request_id=request_id)
        assert answer.status in (200, 404), (method, path, answer.status, answer.body)
        return answer


def request_ids_of(events: list[dict[str, Any]]) -> set[str]:
    return {event["details"]["requestId"] for event in events}


def delivered(fake: ThreadedBackend, request_ids: list[str]) -> bool:
    return set(request_ids) <= request_ids_of(fake.audit_events())


def backend_mode(valkey: ValkeyServer, store: Path, **more: str) -> dict[str, str]:
    return {
        "VALKEY_URL": valkey.url(),
        "STORE_PATH": str(store),
        "TOOLS_MODE": "builtin",
        "TOOLS_DRY_RUN": "true",
        **more,
    }


def test_500_operations_through_a_backend_outage_are_all_delivered_without_a_value(
    service: MakeService,
    fake: ThreadedBackend,
    valkey_server_factory: StartValkeyServer,
    tmp_path: Path,
) -> None:
    valkey = valkey_server_factory()
    audit_file = tmp_path / "trail" / "audit.jsonl"
    store = tmp_path / "store"
    svc = service(
        **backend_mode(valkey, store, AUDIT_SINKS="backend,file", AUDIT_FILE=str(audit_file))
    )
    operations = Operations("mixed")

    for n in range(150):
        operations.run(svc, n)
    fake.audit_down()
    for n in range(150, 350):
        operations.run(svc, n)
    held_back = len(fake.audit_events())
    fake.audit_up()
    for n in range(350, 500):
        operations.run(svc, n)

    assert wait_until(lambda: delivered(fake, operations.request_ids), DELIVERY_DEADLINE), (
        f"{len(request_ids_of(fake.audit_events()) & set(operations.request_ids))} of 500 delivered"
    )
    events = fake.audit_events()
    assert held_back <= 150  # the outage held back every event of its operations
    assert len({event["id"] for event in events}) == 500  # duplicates allowed, none missing
    assert request_ids_of(events) == set(operations.request_ids)
    hmacs = [e["details"]["valueHmac"] for e in events if e["action"] == "set_variable"]
    assert hmacs and all(h.startswith("hmac-sha256:") and len(h) == 76 for h in hmacs)
    # The file sink has every event too (it kept taking them during the outage).
    in_file = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert {event["id"] for event in in_file} == {event["id"] for event in events}
    # The values reached the backend, and nowhere in the trail.
    assert leaked(operations.markers, fake.state())
    with valkey.client() as raw:
        stream = stream_dump(raw)
    spool = files_text([store / "audit-spool.jsonl"])
    trail = json.dumps(events, ensure_ascii=False)
    assert leaked(operations.markers, trail, files_text([audit_file]), stream, spool) == []
    assert wait_until(lambda: svc.metric("cronium_runtime_audit_backlog") == 0, 10.0)
    assert svc.metric("cronium_runtime_audit_delivery_retries_total", sink="backend") > 0
    assert svc.metric("cronium_runtime_audit_deliveries_total", sink="file") >= 500


def test_events_held_by_a_killed_process_are_delivered_by_another(
    service: MakeService,
    fake: ThreadedBackend,
    valkey_server_factory: StartValkeyServer,
    tmp_path: Path,
) -> None:
    valkey = valkey_server_factory()
    fake.audit_down()
    first = service(**backend_mode(valkey, tmp_path / "store-1"))
    operations = Operations("killed")
    for n in range(20):
        operations.run(first, n)

    def held_by_one_consumer() -> bool:
        with valkey.client() as raw:
            summary = raw.xpending(STREAM_KEY, GROUP)
        return summary["pending"] == 20 and len(summary["consumers"]) == 1

    assert wait_until(held_by_one_consumer, 10.0)
    first.kill()
    second = service(**backend_mode(valkey, tmp_path / "store-2", AUDIT_CLAIM_IDLE="1s"))
    fake.audit_up()

    assert wait_until(lambda: delivered(fake, operations.request_ids), DELIVERY_DEADLINE)
    with valkey.client() as raw:
        assert wait_until(lambda: raw.xpending(STREAM_KEY, GROUP)["pending"] == 0, 10.0)
    assert second.metric("cronium_runtime_audit_deliveries_total", sink="backend") >= 20


def test_a_valkey_restarted_in_the_middle_loses_no_event(
    service: MakeService,
    fake: ThreadedBackend,
    valkey_server_factory: StartValkeyServer,
    tmp_path: Path,
) -> None:
    valkey = valkey_server_factory(appendonly=True)
    store = tmp_path / "store"
    svc = service(**backend_mode(valkey, store))
    operations = Operations("restart")
    done = threading.Event()
    failures: list[BaseException] = []

    def traffic() -> None:
        try:
            for n in range(200):
                operations.run(svc, n)
        except BaseException as error:
            failures.append(error)
        finally:
            done.set()

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        assert wait_until(lambda: len(operations.request_ids) >= 60, 30.0)
        valkey.stop()  # SIGTERM: Valkey writes its append-only file and exits
        assert wait_until(lambda: len(operations.request_ids) >= 100, 30.0)
        valkey.start()  # the same port and data folder
    finally:
        worker.join(60)
    assert done.is_set() and failures == []

    assert wait_until(lambda: delivered(fake, operations.request_ids), DELIVERY_DEADLINE)
    assert len({event["id"] for event in fake.audit_events()}) == 200
    assert wait_until(lambda: files_text([store / "audit-spool.jsonl"]) == "", 10.0)


def test_with_valkey_down_events_are_spooled_then_delivered_when_it_is_back(
    service: MakeService,
    fake: ThreadedBackend,
    valkey_server_factory: StartValkeyServer,
    tmp_path: Path,
) -> None:
    valkey = valkey_server_factory(appendonly=True)
    store = tmp_path / "store"
    spool = store / "audit-spool.jsonl"
    svc = service(**backend_mode(valkey, store))
    operations = Operations("spooled")
    for n in range(5):
        operations.run(svc, n)
    valkey.stop()

    for n in range(5, 25):
        operations.run(svc, n)

    assert svc.metric("cronium_runtime_audit_events_recorded_total", where="spool") == 20
    spooled = [json.loads(line) for line in spool.read_text().splitlines()]
    assert request_ids_of(spooled) == set(operations.request_ids[5:])
    assert leaked(operations.markers, spool.read_text()) == []
    ready = svc.process.request("GET", "/health/ready").json()
    assert ready["status"] == "degraded"
    assert ready["checks"]["audit"]["status"] == "down"
    assert "spool" in ready["checks"]["audit"]["error"]

    valkey.start()

    assert wait_until(lambda: delivered(fake, operations.request_ids), DELIVERY_DEADLINE)
    assert not spool.exists() or spool.read_text() == ""
    assert svc.metric("cronium_runtime_audit_spool_replayed_total") == 20
    assert wait_until(
        lambda: (
            svc.process.request("GET", "/health/ready").json()["checks"]["audit"]["status"] == "up"
        ),
        10.0,
    )


def test_fail_closed_refuses_writes_while_valkey_is_down_and_performs_nothing(
    service: MakeService,
    fake: ThreadedBackend,
    valkey_server_factory: StartValkeyServer,
    tmp_path: Path,
) -> None:
    valkey = valkey_server_factory(appendonly=True)
    svc = service(
        VALKEY_URL=valkey.url(),
        STORE_PATH=str(tmp_path / "store"),
        AUDIT_FAIL_CLOSED="true",
        TOOLS_MODE="backend",
    )
    variable = f"/executions/{EXECUTION}/variables/guarded"
    output = f"/executions/{EXECUTION}/output"
    tool = {"tool": "slack", "action": "send_message", "params": {"text": "hello"}}
    assert svc.call("PUT", variable, {"value": "before"}).status == 200
    valkey.stop()

    refused = [
        svc.call("PUT", variable, {"value": "during"}),
        svc.call("POST", output, {"data": "during"}),
        svc.call("POST", "/tool-actions/execute", tool),
    ]

    for answer in refused:
        assert answer.status == 503, answer.body
        assert answer.json()["code"] == "AUDIT_UNAVAILABLE"
    assert fake.loop.call(lambda: fake.fake.variables[("user-1", "guarded")]["value"]) == "before"
    assert fake.loop.call(lambda: fake.fake.outputs.get(EXECUTION, [])) == []
    assert fake.loop.call(lambda: fake.fake.of("tool")) == []
    # Reads are still answered (their events are spooled).
    assert svc.call("GET", variable).json()["data"]["value"] == "before"
    assert svc.call("GET", f"/executions/{EXECUTION}/input").status == 200

    valkey.start()

    assert wait_until(lambda: svc.call("PUT", variable, {"value": "after"}).status == 200, 15.0)
    assert svc.call("POST", output, {"data": "after"}).status == 200
    assert svc.call("POST", "/tool-actions/execute", tool).status == 200
    assert fake.loop.call(lambda: fake.fake.variables[("user-1", "guarded")]["value"]) == "after"
    assert len(fake.loop.call(lambda: fake.fake.of("tool"))) == 1


# --- embedded mode: the local store's outbox ----------------------------------------------


def store_trail(store: Path) -> list[dict[str, Any]]:
    """The store sink's events, read straight from the file."""
    connection = sqlite3.connect(store / "runtime.db")
    try:
        rows = connection.execute("SELECT event FROM audit_events ORDER BY seq").fetchall()
    finally:
        connection.close()
    return [json.loads(text) for (text,) in rows]


def test_two_embedded_processes_sharing_a_store_deliver_each_event_once(
    start_server: Callable[..., Any],
    run_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    store, audit_file = tmp_path / "store", tmp_path / "trail" / "audit.jsonl"
    env = {
        "JWT_SECRET": SECRET,
        "STORE_PATH": str(store),
        "AUDIT_SINKS": "store,file",
        "AUDIT_FILE": str(audit_file),
        "RATE_LIMIT_PER_MIN": "100000",
    }
    servers = [start_server(**env), start_server(**env)]
    created = run_cli(servers[0].env, "executions", "create", "--json")
    assert created.returncode == 0, created.stderr
    execution = json.loads(created.stdout)
    headers = {"Authorization": f"Bearer {execution['token']}"}
    path = f"/executions/{execution['executionId']}/variables/shared"
    request_ids: list[str] = []

    def traffic(index: int) -> None:
        for n in range(60):
            request_id = f"embedded-{index}-{n}"
            request_ids.append(request_id)
            answer = servers[index].request(
                "PUT", path, body={"value": n}, headers={**headers, "X-Request-ID": request_id}
            )
            assert answer.status == 200, answer.body

    workers = [threading.Thread(target=traffic, args=(index,)) for index in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    one_shot = run_cli(servers[0].env, "vars", "set", "from-cli", "1")
    assert one_shot.returncode == 0, one_shot.stderr

    def all_in_store() -> bool:
        return set(request_ids) <= request_ids_of(store_trail(store))

    assert wait_until(all_in_store, DELIVERY_DEADLINE)
    assert any(event["executionId"] == "cli" for event in store_trail(store))

    def file_ids() -> list[str]:
        return [json.loads(line)["id"] for line in files_text([audit_file]).splitlines() if line]

    assert wait_until(lambda: len(file_ids()) >= 121, DELIVERY_DEADLINE)
    ids = file_ids()
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert len(ids) == len(store_trail(store)) == 121
    with sqlite3.connect(store / "runtime.db") as connection:
        assert connection.execute("SELECT count(*) FROM audit_outbox").fetchone() == (0,)


def test_a_one_shot_command_delivers_its_event_before_it_exits(
    run_cli: Callable[..., Any], environment: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    env = {**environment, "JWT_SECRET": SECRET, "STORE_PATH": str(store), "AUDIT_SINKS": "store"}

    done = run_cli(env, "vars", "set", "greeting", '"hello"')

    assert done.returncode == 0, done.stderr
    (event,) = store_trail(store)
    assert (event["executionId"], event["action"]) == ("cli", "set_variable")
    assert "hello" not in json.dumps(event)
