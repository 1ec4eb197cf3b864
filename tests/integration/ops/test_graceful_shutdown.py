"""SIGTERM while a request is in flight, on a real `serve` (SPEC section 6, issue 9): readiness
answers 503 for `server.drainDelay` while requests are still served, then the listener
closes, the request in flight finishes with its answer, its audit event reaches the sink,
and the process exits 0 with nothing left unclosed on stderr.

The slow request is a built-in webhook tool call to a loopback webhook that answers only
when the test lets it, so "in flight" lasts exactly as long as the test needs.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ops_kit import (
    SECRET,
    STARTED,
    UNCLEAN,
    Execution,
    HeldWebhook,
    listener_closed,
    wait_until,
)
from valkey_servers import ValkeyServer

DRAIN_DELAY = 3.0
EXIT_BOUND = 20.0  # seconds for the process to end once the held request is let go
METRICS_FOLDER = re.compile(r"metrics: each process keeps its own in (\S+);")


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "two workers and Valkey"])
def test_sigterm_lets_the_request_in_flight_finish_and_its_audit_event_reach_the_sink(
    *,  # pytest passes fixtures by name
    workers: int,
    start_server: Callable[..., Any],
    store_path: Path,
    new_execution: Callable[[], Execution],
    webhook: HeldWebhook,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    audit_file = tmp_path / "audit.jsonl"
    settings = {
        "JWT_SECRET": SECRET,
        "STORE_PATH": str(store_path),
        "DRAIN_DELAY": f"{DRAIN_DELAY:g}s",
        "SHUTDOWN_TIMEOUT": "30s",
        "TOOLS_MODE": "builtin",
        "TOOLS_DRY_RUN": "false",
        "TOOLS_TIMEOUT": "60s",
        "TOOLS_WEBHOOK_URL": webhook.url,
        "AUDIT_SINKS": "file",
        "AUDIT_FILE": str(audit_file),
        # Python hides ResourceWarnings by default; an unclosed socket or file must show.
        "PYTHONWARNINGS": "always::ResourceWarning",
    }
    if workers > 1:
        valkey: ValkeyServer = request.getfixturevalue("valkey_server")
        settings |= {"WORKERS": str(workers), "VALKEY_URL": valkey.url()}
    server = start_server(**settings)
    assert wait_until(
        lambda: server.stderr.count("Application startup complete.") == workers, 15.0
    ), server.stderr
    script = new_execution()
    assert server.request("GET", "/health/ready").json()["status"] == "ready"
    metrics_folders = METRICS_FOLDER.findall(server.stderr)
    if workers > 1:  # one made by serve, where each worker keeps its metrics
        [folder] = metrics_folders
        assert any(Path(folder).glob("counter_*.db"))
    else:  # one process keeps them in its memory
        assert metrics_folders == []

    answers: list[Any] = []
    call = threading.Thread(
        target=lambda: answers.append(
            server.request(
                "POST",
                "/tool-actions/execute",
                body={"tool": "webhook", "action": "post", "params": {"body": {"n": 1}}},
                headers={**script.headers, "X-Request-ID": "slow-call"},
                timeout=60.0,
            )
        )
    )
    call.start()
    try:
        assert webhook.arrived.wait(10.0), "the tool call never reached the webhook"
        server.terminate()

        # Draining: not ready, yet still answering.
        assert wait_until(
            lambda: server.request("GET", "/health/ready").status == 503, DRAIN_DELAY
        ), "readiness did not turn 503 during the drain"
        assert server.request("GET", "/health/ready").json()["status"] == "unavailable"
        assert server.request("GET", "/health").status == 200

        # Then the listener closes while the held request is still in flight.
        assert wait_until(lambda: listener_closed(server.port), DRAIN_DELAY + 10.0)
        assert call.is_alive()
        assert server.process.poll() is None
    finally:
        webhook.release.set()
        call.join(EXIT_BOUND)

    [answer] = answers
    assert answer.status == 200, answer.body
    assert answer.json()["success"] is True
    server.returncode = server.process.wait(EXIT_BOUND)
    assert server.returncode == 0, server.stderr[-3000:]

    events = [json.loads(line) for line in audit_file.read_text().splitlines()]
    # At least once: a sink may be handed an event again (same id), never two events.
    by_id = {event["id"]: event for event in events if event["details"]["requestId"] == "slow-call"}
    assert len(by_id) == 1, events
    [tool_event] = by_id.values()
    assert tool_event["action"] == "execute_tool_action"
    assert tool_event["details"]["outcome"] == "ok"
    stderr = server.stderr
    unclean = [line for line in stderr.splitlines() if UNCLEAN.search(line)]
    assert unclean == []
    assert stderr.count("Application shutdown complete.") == workers
    if workers > 1:
        pids = {int(pid) for pid in STARTED.findall(stderr)}
        finished = {int(pid) for pid in re.findall(r"Finished server process \[(\d+)\]", stderr)}
        assert len(pids) == workers
        assert finished == pids
        assert not Path(metrics_folders[0]).exists()  # removed with the workers


def test_a_tool_call_still_running_after_the_shutdown_timeout_is_cut_off_as_outcome_unknown(
    start_server: Callable[..., Any],
    store_path: Path,
    new_execution: Callable[[], Execution],
    webhook: HeldWebhook,
    tmp_path: Path,
) -> None:
    audit_file = tmp_path / "audit.jsonl"
    server = start_server(
        JWT_SECRET=SECRET,
        STORE_PATH=str(store_path),
        SHUTDOWN_TIMEOUT="1500ms",
        TOOLS_MODE="builtin",
        TOOLS_TIMEOUT="60s",
        TOOLS_WEBHOOK_URL=webhook.url,
        AUDIT_SINKS="file",
        AUDIT_FILE=str(audit_file),
        PYTHONWARNINGS="always::ResourceWarning",
    )
    script = new_execution()
    answers: list[Any] = []

    def call() -> None:
        try:
            answers.append(
                server.request(
                    "POST",
                    "/tool-actions/execute",
                    body={"tool": "webhook", "action": "post", "params": {"body": {}}},
                    headers={**script.headers, "X-Request-ID": "cut-off"},
                    timeout=60.0,
                )
            )
        except OSError as error:
            answers.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert webhook.arrived.wait(10.0), "the tool call never reached the webhook"
        server.terminate()
        # The webhook has not answered: after the shutdown timeout the call is cut off.
        server.returncode = server.process.wait(EXIT_BOUND)
    finally:
        webhook.release.set()
        caller.join(EXIT_BOUND)

    assert server.returncode == 0, server.stderr[-3000:]
    # Not a 5xx, which the helpers would retry and so send the tool call again.
    [answer] = answers
    assert answer.status == 200, answer.body
    assert answer.json()["success"] is False
    assert answer.json()["code"] == "TOOL_OUTCOME_UNKNOWN"
    assert len(webhook.bodies) == 1
    events = [json.loads(line) for line in audit_file.read_text().splitlines()]
    [tool_event] = [event for event in events if event["details"]["requestId"] == "cut-off"]
    assert tool_event["details"]["outcome"] == "CANCELLED"
    unclean = [line for line in server.stderr.splitlines() if UNCLEAN.search(line)]
    assert unclean == []
