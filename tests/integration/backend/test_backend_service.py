"""The real `cronium-runtime serve` in backend mode, against the fake Cronium backend.

The fake backend (and the local webhook stand-in) run on an event loop of their own in a
background thread, so these tests are plain synchronous code making blocking HTTP calls to
the service process while the fakes keep answering.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from fake_backend import CONTEXT, FakeBackend
from valkey_servers import ValkeyServer, require_binary

SECRET = "backend-service-tests-jwt-secret-40chars"
EXECUTION = "exec-1"
USER = "user-1"
TIMEOUT = 1.0  # BACKEND_TIMEOUT
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
KEY = "reports/2026 résumé ✓"  # a "/" , a space and unicode: %-encoded in both paths

assert len(SECRET) == 40

StartServer = Callable[..., Any]
RunCli = Callable[..., subprocess.CompletedProcess[str]]


# --- fakes on a loop of their own ----------------------------------------------------------


class LoopThread:
    """An asyncio loop running in a daemon thread; `run` waits for a coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class ThreadedBackend:
    """`FakeBackend` served from a `LoopThread`; stop and start it again on the same port."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.fake = FakeBackend()
        self.fake.contexts[EXECUTION] = dict(CONTEXT)
        self.running = False

    def start(self) -> None:
        self.loop.run(self.fake.start(self.fake.port or None))
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.loop.run(self.fake.stop())
            self.running = False


@dataclass
class WebhookStandIn:
    """A local aiohttp server playing the webhook: records every body, answers 200 ok."""

    loop: LoopThread
    received: list[tuple[str, Any]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append((request.path, json.loads(raw) if raw else None))
        return web.json_response({"ok": True})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def fake(loop_thread: LoopThread) -> Iterator[ThreadedBackend]:
    backend = ThreadedBackend(loop_thread)
    backend.start()
    yield backend
    backend.stop()


@pytest.fixture
def webhook(loop_thread: LoopThread) -> Iterator[WebhookStandIn]:
    stand_in = WebhookStandIn(loop_thread)
    loop_thread.run(stand_in._start())
    yield stand_in
    loop_thread.run(stand_in._stop())


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    require_binary("valkey-server")
    server = ValkeyServer(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


# --- the service ---------------------------------------------------------------------------


class Service:
    """One `serve` process in backend mode and the tokens to drive it."""

    def __init__(self, process: Any, run_cli: RunCli) -> None:
        self.process = process
        self.run_cli = run_cli
        self._tokens: dict[tuple[str, str], str] = {}

    def token(self, execution: str = EXECUTION, user: str = USER) -> str:
        if (execution, user) not in self._tokens:
            done = self.run_cli(self.process.env, "token", "--execution", execution, "--user", user)
            assert done.returncode == 0, done.stderr
            self._tokens[(execution, user)] = done.stdout.strip()
        return self._tokens[(execution, user)]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        execution: str = EXECUTION,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        sent = {"Authorization": f"Bearer {self.token(execution)}", **(headers or {})}
        return self.process.request(method, path, body=body, headers=sent, timeout=timeout)

    def ready(self) -> Any:
        return self.process.request("GET", "/health/ready")

    def metrics(self) -> str:
        return str(self.process.request("GET", "/metrics").body.decode())


MakeService = Callable[..., Service]


@pytest.fixture
def service(start_server: StartServer, run_cli: RunCli, fake: ThreadedBackend) -> MakeService:
    def start(**overrides: str) -> Service:
        env = {
            "BACKEND_URL": fake.fake.base_url,
            "BACKEND_TOKEN": fake.fake.token,
            "JWT_SECRET": SECRET,
            "BACKEND_TIMEOUT": f"{TIMEOUT:g}s",
            "BACKEND_MAX_RETRIES": "2",
            "BACKEND_RETRY_DELAY": "50ms",
            "BACKEND_BREAKER_FAILURES": "3",
            "BACKEND_BREAKER_COOLDOWN": "5s",
            "DRAIN_DELAY": "0s",
            **overrides,
        }
        return Service(start_server(**env), run_cli)

    return start


def error_of(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body)
    body: dict[str, Any] = answer.json()
    assert body["success"] is False
    assert body["code"] == code, body
    return body


def variable_path(key: str) -> str:
    return f"/executions/{EXECUTION}/variables/{quote(key, safe='')}"


def helper_tool_call(service: Service, body: dict[str, Any], attempts: int = 3) -> Any:
    """The Python helpers' tool call: retry a 5xx or a failed connection, raise on
    `success: false` without retrying, else return the result's data."""
    for attempt in range(attempts):
        try:
            answer = service.call("POST", "/tool-actions/execute", body)
        except OSError:
            if attempt == attempts - 1:
                raise
            continue
        if answer.status >= 500 and attempt < attempts - 1:
            continue
        result = answer.json()
        if not result.get("success"):
            raise RuntimeError(f"tool failed: {result}")
        return result.get("data")
    raise AssertionError("unreachable")


# --- executions ----------------------------------------------------------------------------


def test_input_context_output_and_condition_go_through_the_backend(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    backend = fake.fake

    answer = svc.call("GET", f"/executions/{EXECUTION}/input")
    assert answer.status == 200, answer.body
    assert answer.json() == {"success": True, "data": {"n": 1}}

    first = svc.call("GET", f"/executions/{EXECUTION}/context").json()
    second = svc.call("GET", f"/executions/{EXECUTION}/context").json()
    context = first["data"]
    event = CONTEXT["event"]
    assert isinstance(event, dict)
    assert context["executionId"] == EXECUTION
    assert context["jobId"] == "job-1"
    assert context["userId"] == USER
    assert context["eventId"] == "event-1"
    assert (context["id"], context["name"], context["type"]) == ("event-1", "Nightly", "PYTHON")
    assert (context["eventName"], context["eventType"]) == ("Nightly", "PYTHON")
    assert context["metadata"] == CONTEXT["metadata"]
    assert context["event"] == event
    assert context["user"] == CONTEXT["user"]
    # No startTime from the backend: the first read's time, the same on every read.
    assert TIMESTAMP.match(context["startTime"]), context["startTime"]
    assert second["data"]["startTime"] == context["startTime"]

    assert svc.call(
        "POST", f"/executions/{EXECUTION}/output", {"data": {"rows": [1, 2]}}
    ).json() == {"success": True}
    assert svc.call("POST", f"/executions/{EXECUTION}/condition", {"condition": True}).json() == {
        "success": True
    }
    [output] = backend.outputs[EXECUTION]
    assert output["output"] == {"rows": [1, 2]}
    assert TIMESTAMP.match(output["timestamp"]), output
    [condition] = backend.conditions[EXECUTION]
    assert condition["condition"] is True
    assert TIMESTAMP.match(condition["timestamp"]), condition
    for request in backend.received:
        assert request.headers["Authorization"] == f"Bearer {backend.token}"


def test_the_backends_start_time_is_used_when_it_sends_one(
    service: MakeService, fake: ThreadedBackend
) -> None:
    fake.fake.contexts["exec-2"] = {
        **CONTEXT,
        "executionId": "exec-2",
        "startTime": "2026-01-02T03:04:05.678Z",
    }
    svc = service()
    answer = svc.call("GET", "/executions/exec-2/context", execution="exec-2")
    assert answer.status == 200, answer.body
    assert answer.json()["data"]["startTime"] == "2026-01-02T03:04:05.678Z"


def test_an_execution_the_backend_does_not_know_is_execution_not_found(
    service: MakeService,
) -> None:
    svc = service()
    for method, leaf, body in (
        ("GET", "input", None),
        ("GET", "context", None),
        ("POST", "output", {"data": 1}),
        ("POST", "condition", {"condition": False}),
    ):
        answer = svc.call(method, f"/executions/ghost/{leaf}", body, execution="ghost")
        error_of(answer, 404, "EXECUTION_NOT_FOUND")


# --- variables -----------------------------------------------------------------------------


def test_variables_are_put_read_listed_and_deleted_in_the_backend_with_encoded_keys(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    backend = fake.fake
    path = variable_path(KEY)
    backend_path = f"/api/internal/variables/{USER}/{quote(KEY, safe='')}"

    put = svc.call("PUT", path, {"value": {"a": [1, "ü"]}})
    assert put.status == 200, put.body
    data = put.json()["data"]
    assert (data["key"], data["value"]) == (KEY, {"a": [1, "ü"]})
    assert TIMESTAMP.match(data["updatedAt"])
    assert backend.variables[(USER, KEY)]["value"] == {"a": [1, "ü"]}
    [sent] = backend.of("variable_put")
    assert sent.path == backend_path
    assert sent.params == {"userId": USER, "key": KEY}
    assert sent.body == {"value": {"a": [1, "ü"]}}

    got = svc.call("GET", path)
    assert got.status == 200, got.body
    assert got.json()["data"]["key"] == KEY
    assert got.json()["data"]["value"] == {"a": [1, "ü"]}
    assert backend.of("variable_get")[-1].path == backend_path

    listed = svc.call("GET", f"/executions/{EXECUTION}/variables")
    assert listed.status == 200, listed.body
    assert [item["key"] for item in listed.json()["data"]] == [KEY]

    deleted = svc.call("DELETE", path)
    assert (deleted.status, deleted.json()) == (200, {"success": True})
    assert backend.of("variable_delete")[-1].path == backend_path
    assert (USER, KEY) not in backend.variables

    error_of(svc.call("GET", path), 404, "VARIABLE_NOT_FOUND")
    error_of(svc.call("DELETE", path), 404, "VARIABLE_NOT_FOUND")


def test_an_older_backend_cannot_delete_or_list_variables(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    fake.fake.old_backend = True
    fake.fake.variables[(USER, "k")] = {"value": 1, "updatedAt": "2026-11-28T19:04:05.123Z"}
    body = error_of(svc.call("DELETE", variable_path("k")), 502, "BACKEND_ERROR")
    assert "the backend cannot delete variables" in body["message"]
    assert body["error"] == "Bad Gateway"
    body = error_of(svc.call("GET", f"/executions/{EXECUTION}/variables"), 502, "BACKEND_ERROR")
    assert "the backend cannot list variables" in body["message"]
    assert len(fake.fake.of("variable_delete")) == 1  # a 4xx is final: not retried


def test_the_scripts_request_id_reaches_the_backend(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    fake.fake.variables[(USER, "k")] = {"value": 1, "updatedAt": "2026-11-28T19:04:05.123Z"}
    answer = svc.call("GET", variable_path("k"), headers={"X-Request-ID": "script-req-42"})
    assert answer.status == 200, answer.body
    assert answer.headers["X-Request-ID"] == "script-req-42"
    assert fake.fake.of("variable_get")[-1].headers.get("X-Request-ID") == "script-req-42"
    svc.call("POST", f"/executions/{EXECUTION}/output", {"data": 1}, headers={
        "X-Request-ID": "script-req-43"
    })  # fmt: skip
    assert fake.fake.of("output")[-1].headers.get("X-Request-ID") == "script-req-43"


def test_a_refused_service_token_is_backend_auth_failed_never_401(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    fake.fake.refuse_token = True
    for method, path, body in (
        ("GET", f"/executions/{EXECUTION}/input", None),
        ("GET", variable_path("k"), None),
        ("PUT", variable_path("k"), {"value": 1}),
        ("POST", f"/executions/{EXECUTION}/output", {"data": 1}),
    ):
        refused = error_of(svc.call(method, path, body), 502, "BACKEND_AUTH_FAILED")
        assert refused["message"] == "the runtime's backend token was refused"


# --- the backend away ----------------------------------------------------------------------


def test_a_stopped_backend_is_503_for_reads_and_writes(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service(BACKEND_BREAKER_FAILURES="100")
    assert svc.call("GET", f"/executions/{EXECUTION}/input").status == 200
    assert svc.ready().json()["checks"]["backend"]["status"] == "up"
    fake.stop()
    # The context this process has read it keeps (SPEC section 7: it never changes).
    assert svc.call("GET", f"/executions/{EXECUTION}/input").status == 200
    for method, path, body, execution in (
        ("GET", "/executions/exec-2/input", None, "exec-2"),  # never read here
        ("GET", "/executions/exec-2/context", None, "exec-2"),
        ("GET", variable_path("k"), None, EXECUTION),
        ("PUT", variable_path("k"), {"value": 1}, EXECUTION),
        ("POST", f"/executions/{EXECUTION}/output", {"data": 1}, EXECUTION),
    ):
        started = time.monotonic()
        answer = svc.call(method, path, body, execution=execution)
        elapsed = time.monotonic() - started
        error_of(answer, 503, "BACKEND_UNAVAILABLE")
        assert elapsed < TIMEOUT + 2.0, (method, path, elapsed)  # loaded CI: generous
    ready = svc.ready()
    assert ready.json()["checks"]["backend"]["status"] == "down", ready.body


def test_readiness_is_unavailable_with_the_backend_down_and_no_cache(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service(BACKEND_BREAKER_FAILURES="100")
    fake.stop()
    error_of(svc.call("GET", f"/executions/{EXECUTION}/input"), 503, "BACKEND_UNAVAILABLE")
    ready = svc.ready()
    assert ready.json()["checks"]["backend"]["status"] == "down"
    assert (ready.status, ready.json()["status"]) == (503, "unavailable")


def test_a_silent_backend_fails_within_the_timeout_and_the_open_breaker_answers_at_once(
    service: MakeService, fake: ThreadedBackend
) -> None:
    # The audit trail kept locally: a backend that still takes audit events answers, and the
    # breaker rightly counts any answer as the backend being alive. Silent here is silent.
    svc = service(BACKEND_BREAKER_FAILURES="2", BACKEND_BREAKER_COOLDOWN="30s", AUDIT_SINKS="store")
    fake.fake.go_silent("context")
    for _ in range(2):
        started = time.monotonic()
        answer = svc.call("GET", f"/executions/{EXECUTION}/input")
        elapsed = time.monotonic() - started
        error_of(answer, 503, "BACKEND_UNAVAILABLE")
        assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 2.5, elapsed  # bounded, not hanging
    received = len(fake.fake.received)
    for method, path, body in (
        ("GET", f"/executions/{EXECUTION}/input", None),
        ("PUT", variable_path("k"), {"value": 1}),
    ):
        started = time.monotonic()
        answer = svc.call(method, path, body)
        elapsed = time.monotonic() - started
        body_ = error_of(answer, 503, "BACKEND_UNAVAILABLE")
        assert "circuit open" in body_["message"]
        assert elapsed < 0.8, elapsed  # no backend wait: far under TIMEOUT
    assert len(fake.fake.received) == received  # nothing more reached the backend
    metrics = svc.metrics()
    assert "cronium_runtime_backend_breaker_state 2.0" in metrics
    assert 'outcome="breaker_open"' in metrics
    ready = svc.ready().json()
    assert ready["checks"]["backend"]["status"] == "down"


def test_stale_answers_from_valkey_while_the_backend_is_down_and_writes_503(
    service: MakeService, fake: ThreadedBackend, valkey: ValkeyServer
) -> None:
    svc = service(
        VALKEY_URL=valkey.url(),
        CACHE_TTL="1s",
        CACHE_STALE_WINDOW="1h",
        BACKEND_BREAKER_FAILURES="100",
    )
    fake.fake.variables[(USER, KEY)] = {"value": [1, 2], "updatedAt": "2026-11-28T19:04:05.123Z"}
    variable = svc.call("GET", variable_path(KEY))
    assert variable.status == 200, variable.body
    context = svc.call("GET", f"/executions/{EXECUTION}/context")
    assert context.status == 200, context.body
    fake.stop()
    time.sleep(1.3)  # past the TTL, well within the stale window

    stale_variable = svc.call("GET", variable_path(KEY))
    assert stale_variable.status == 200, stale_variable.body
    assert stale_variable.json()["data"]["value"] == [1, 2]
    stale_input = svc.call("GET", f"/executions/{EXECUTION}/input")
    assert stale_input.status == 200, stale_input.body
    assert stale_input.json()["data"] == {"n": 1}
    stale_context = svc.call("GET", f"/executions/{EXECUTION}/context")
    assert stale_context.status == 200, stale_context.body
    assert stale_context.json()["data"] == context.json()["data"]  # startTime included

    error_of(svc.call("PUT", variable_path(KEY), {"value": 3}), 503, "BACKEND_UNAVAILABLE")
    error_of(
        svc.call("POST", f"/executions/{EXECUTION}/output", {"data": 1}),
        503,
        "BACKEND_UNAVAILABLE",
    )
    # A service still answering scripts from its cache is degraded, not unavailable.
    ready = svc.ready()
    assert ready.json()["checks"]["backend"]["status"] == "down", ready.body
    assert (ready.status, ready.json()["status"]) == (200, "degraded")


# --- tools through the backend -------------------------------------------------------------


def test_a_tool_call_reaches_the_backend_and_its_result_comes_back_unwrapped(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    backend = fake.fake
    backend.tool_reply = {"success": True, "data": {"ts": "1.2"}, "metadata": {"m": 1}}
    answer = svc.call(
        "POST",
        "/tool-actions/execute",
        {"tool": "slack", "action": "send_message", "config": {"text": "hi"}},
    )
    assert answer.status == 200, answer.body
    assert answer.json() == {"success": True, "data": {"ts": "1.2"}, "metadata": {"m": 1}}
    [sent] = backend.of("tool")
    assert sent.body == {
        "executionId": EXECUTION,
        "userId": USER,
        "tool": "slack",
        "action": "send_message",
        "params": {"text": "hi"},
    }
    both = svc.call(
        "POST",
        "/tool-actions/execute",
        {"tool": "slack", "action": "send_message", "params": {"text": "p"}, "config": {}},
    )
    assert both.status == 200, both.body
    assert backend.of("tool")[-1].body["params"] == {"text": "p"}  # params wins


def test_a_tool_call_answered_500_is_outcome_unknown_and_sent_exactly_once(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    fake.fake.tool_status = 500
    call = {"tool": "slack", "action": "send_message", "params": {"text": "once"}}
    answer = svc.call("POST", "/tool-actions/execute", call)
    assert answer.status == 200, answer.body
    result = answer.json()
    assert (result["success"], result["code"]) == (False, "TOOL_OUTCOME_UNKNOWN")
    assert len(fake.fake.of("tool")) == 1
    with pytest.raises(RuntimeError, match="TOOL_OUTCOME_UNKNOWN"):
        helper_tool_call(svc, call)
    assert len(fake.fake.of("tool")) == 2  # the helper's one call, not repeated by anyone


def test_a_tool_call_with_the_backend_down_is_503_and_never_sent(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    # A warm connection pool first: a closed pooled connection must not count as "sent".
    assert svc.call("GET", f"/executions/{EXECUTION}/input").status == 200
    fake.stop()
    answer = svc.call("POST", "/tool-actions/execute", {"tool": "log", "action": "x", "params": {}})
    error_of(answer, 503, "BACKEND_UNAVAILABLE")
    fake.start()
    assert fake.fake.of("tool") == []


# --- built-in tools ------------------------------------------------------------------------


def test_builtin_dry_run_validates_and_sends_nothing(
    service: MakeService, fake: ThreadedBackend, webhook: WebhookStandIn
) -> None:
    svc = service(
        TOOLS_MODE="builtin",
        TOOLS_DRY_RUN="true",
        TOOLS_SLACK_WEBHOOK_URL=webhook.url("/slack/secret"),
    )
    missing = svc.call(
        "POST", "/tool-actions/execute", {"tool": "slack", "action": "send_message", "params": {}}
    )
    body = error_of(missing, 400, "INVALID_TOOL_PARAMS")
    assert "text" in body["message"]
    answer = svc.call(
        "POST",
        "/tool-actions/execute",
        {"tool": "slack", "action": "send_message", "config": {"text": "hello"}},
    )
    assert answer.status == 200, answer.body
    assert answer.json() == {"success": True, "data": None, "metadata": {"dryRun": True}}
    assert webhook.received == []
    assert fake.fake.of("tool") == []


def test_builtin_webhook_receives_the_body(
    service: MakeService, fake: ThreadedBackend, webhook: WebhookStandIn
) -> None:
    svc = service(TOOLS_MODE="builtin", TOOLS_WEBHOOK_URL=webhook.url("/hook"))
    answer = svc.call(
        "POST",
        "/tool-actions/execute",
        {"tool": "webhook", "action": "post", "params": {"body": {"event": "done", "n": 3}}},
    )
    assert answer.status == 200, answer.body
    assert answer.json()["success"] is True
    assert webhook.received == [("/hook", {"event": "done", "n": 3})]
    assert fake.fake.of("tool") == []


# --- idempotency ---------------------------------------------------------------------------


def test_an_idempotent_tool_call_is_replayed_by_another_process_sharing_valkey(
    service: MakeService, fake: ThreadedBackend, valkey: ValkeyServer
) -> None:
    first = service(VALKEY_URL=valkey.url())
    second = service(VALKEY_URL=valkey.url())
    call = {"tool": "slack", "action": "send_message", "params": {"text": "once"}}
    key = {"Idempotency-Key": "tool-key-1"}
    original = first.call("POST", "/tool-actions/execute", call, headers=key)
    assert original.status == 200, original.body
    assert original.headers.get("Idempotency-Replayed") is None
    replayed = second.call("POST", "/tool-actions/execute", call, headers=key)
    assert replayed.status == original.status
    assert replayed.json() == original.json()
    assert replayed.headers.get("Idempotency-Replayed") == "true"
    assert len(fake.fake.of("tool")) == 1

    other = {**call, "params": {"text": "another"}}
    error_of(second.call("POST", "/tool-actions/execute", other, headers=key), 409,
             "IDEMPOTENCY_CONFLICT")  # fmt: skip
    assert len(fake.fake.of("tool")) == 1


def test_an_idempotent_output_is_replayed_from_the_local_store(
    service: MakeService, fake: ThreadedBackend
) -> None:
    svc = service()
    key = {"Idempotency-Key": "output-key-1"}
    path = f"/executions/{EXECUTION}/output"
    original = svc.call("POST", path, {"data": {"x": 1}}, headers=key)
    assert (original.status, original.json()) == (200, {"success": True})
    replayed = svc.call("POST", path, {"data": {"x": 1}}, headers=key)
    assert (replayed.status, replayed.json()) == (200, {"success": True})
    assert replayed.headers.get("Idempotency-Replayed") == "true"
    assert len(fake.fake.outputs[EXECUTION]) == 1
