"""What the HTTP tests share: the executions they run against, hand-written fakes, the
harness around one app, and helpers to forge tokens and check the error envelope."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from dependency_injector import providers
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from adapters.memory.audit import InMemoryAuditLog
from adapters.memory.executions import InMemoryExecutionRepository
from adapters.memory.tools import RecordingToolGateway
from adapters.memory.variables import InMemoryVariableRepository
from application.ports import Clock, ExecutionRepository, HealthProbe, RateLimiter, ToolGateway
from domain.model import (
    DependencyHealth,
    ExecutionContext,
    Principal,
    RateLimitDecision,
    ToolCall,
    ToolResult,
)
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import load_settings

SECRET = "x" * 40
OTHER_SECRET = "y" * 40
T0 = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)

ALICE = "user-alice"
BOB = "user-bob"
# Two runs of Alice's events and one of Bob's: variables are shared by the first two only.
EXEC = "exec-7f3a"
EXEC_2 = "exec-9c21"
BOB_EXEC = "exec-b0b5"

INPUT = {"orders": [1, 2, 3], "note": "grüße"}


def alice_execution(**overrides: Any) -> ExecutionContext:
    fields: dict[str, Any] = {
        "execution_id": EXEC,
        "user_id": ALICE,
        "job_id": "job-1",
        "event_id": "event-1",
        "metadata": {"input": INPUT},
    }
    fields.update(overrides)
    return ExecutionContext(**fields)


def default_executions() -> list[ExecutionContext]:
    return [
        alice_execution(),
        alice_execution(execution_id=EXEC_2, job_id="job-2", metadata={}),
        ExecutionContext(execution_id=BOB_EXEC, user_id=BOB, metadata={}),
    ]


class FixedClock(Clock):
    def __init__(self, moment: datetime = T0) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


class RaisingExecutionRepository(ExecutionRepository):
    """A system of record that refuses every call with the error it was given."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get_context(self, execution_id: str) -> ExecutionContext:
        raise self.error

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        raise self.error

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        raise self.error


class ExplodingExecutionRepository(RaisingExecutionRepository):
    """A system of record with a bug: every call raises something that is no DomainError."""

    def __init__(self) -> None:
        super().__init__(RuntimeError("the execution store is on fire"))


class StubToolGateway(ToolGateway):
    """Answers every tool action with the result it was given, and keeps the calls."""

    def __init__(self, result: ToolResult) -> None:
        self.result = result
        self.calls: list[ToolCall] = []

    async def execute(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        return self.result


class ExplodingRateLimiter(RateLimiter):
    """A rate limiter with a bug, failing inside the authentication middleware."""

    async def acquire(self, key: str) -> RateLimitDecision:
        raise RuntimeError("the bucket store is on fire")


class RaisingToolGateway(ToolGateway):
    """A tool gateway that fails with the error it was given, before sending anything."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def execute(self, call: ToolCall) -> ToolResult:
        raise self.error


class FixedHealthProbe(HealthProbe):
    def __init__(self, name: str, status: str = "up", error: str | None = None) -> None:
        self.name = name
        self._health = DependencyHealth(status=status, latency_ms=1.5, error=error)

    async def check(self) -> DependencyHealth:
        return self._health


class HangingHealthProbe(HealthProbe):
    """A dependency that never answers."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def check(self) -> DependencyHealth:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class BrokenHealthProbe(HealthProbe):
    """A probe whose client raises instead of answering."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def check(self) -> DependencyHealth:
        raise ConnectionError("connection refused")


@dataclass
class Api:
    client: TestClient[Any]
    container: Container
    # The fakes themselves (Any: tests read their own attributes, such as `outputs`).
    executions: Any
    variables: InMemoryVariableRepository
    tools: Any
    audit: InMemoryAuditLog

    def token(self, execution_id: str = EXEC, user_id: str = ALICE, ttl: float = 3600) -> str:
        return self.container.token_codec().issue(
            Principal(execution_id=execution_id, user_id=user_id, event_id="event-1"), ttl
        )

    def auth(self, execution_id: str = EXEC, user_id: str = ALICE) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(execution_id, user_id)}"}


MakeApi = Callable[..., Api]


def start_api(
    stack: ExitStack,
    home: Path,
    *,
    env: dict[str, str] | None = None,
    executions: ExecutionRepository | None = None,
    tools: ToolGateway | None = None,
    probes: list[HealthProbe] | None = None,
    overrides: dict[str, Any] | None = None,
    run_lifespan: bool = True,
) -> Api:
    """The app over in-memory adapters, its lifespan running until `stack` closes.

    `overrides` replaces any other provider of the container by name with a fixed object.
    With `run_lifespan=False` the client is not entered: the app has not started.
    """
    environ = {"HOME": str(home), "JWT_SECRET": SECRET, **(env or {})}
    container = Container(settings=load_settings(environ, cwd=home))
    executions = executions or InMemoryExecutionRepository(default_executions())
    variables = InMemoryVariableRepository()
    tools = tools or RecordingToolGateway()
    audit = InMemoryAuditLog()
    container.clock.override(providers.Object(FixedClock()))
    container.execution_repository.override(providers.Object(executions))
    container.variable_repository.override(providers.Object(variables))
    container.tool_gateway.override(providers.Object(tools))
    container.audit_log.override(providers.Object(audit))
    if probes is not None:
        container.health_probes.override(
            providers.List(*(providers.Object(probe) for probe in probes))
        )
    for name, replacement in (overrides or {}).items():
        getattr(container, name).override(providers.Object(replacement))
    client: TestClient[Any] = TestClient(create_app(container=container))
    if run_lifespan:
        stack.enter_context(client)
    return Api(client, container, executions, variables, tools, audit)


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> list[str]:
        return [value.decode() for key, value in self.headers if key == name.lower().encode()]


def raw_request(
    api: Api,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    body: bytes = b"",
    with_raw_path: bool = True,
) -> RawResponse:
    """One request straight through the ASGI interface, headers exactly as given.

    The test client cannot send a header twice: its transport joins repeated headers into
    one comma-separated value before the app sees them. Nor can it leave out `raw_path`,
    which the ASGI spec makes optional. `path` is taken as already URL-decoded.
    """
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
    }
    if not with_raw_path:
        del scope["raw_path"]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await api.client.app(scope, receive, send)  # type: ignore[arg-type]

    api.client.blocking_portal.call(call)
    start = next(message for message in sent if message["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return RawResponse(status=start["status"], headers=list(start["headers"]), body=content)


def forge(
    claims: dict[str, Any],
    secret: str | None = SECRET,
    *,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A token made by hand, as a broken or hostile client would."""
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def claims(**overrides: Any) -> dict[str, Any]:
    """Good claims for EXEC; an override of `...` removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "executionId": EXEC,
        "userId": ALICE,
        "eventId": "event-1",
        "jobId": "job-1",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not ...}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: Any, status: int, code: str, error: str) -> dict[str, Any]:
    """The error envelope of SPEC section 3, exactly; returns the body for further checks."""
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"success", "error", "message", "code"}
    assert body["success"] is False
    assert body["error"] == error
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"].strip()
    return body


def sample(api: Api, name: str, **labels: str) -> float:
    """The value of one sample of the app's /metrics answer (0 when it is absent)."""
    response = api.client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0
