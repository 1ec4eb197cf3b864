"""Hand-written fakes and the world the use-case tests run in.

The `adapters.memory` classes are the main fakes; the ones here add what they cannot do:
a clock the test sets, an audit log that refuses, repositories that fail or block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.memory.audit import InMemoryAuditLog
from adapters.memory.executions import InMemoryExecutionRepository
from adapters.memory.variables import InMemoryVariableRepository
from application.audit import AuditRecorder
from application.ports import AuditLog, Clock, ExecutionRepository, ToolGateway, VariableRepository
from domain.audit import AuditEvent, value_hmac
from domain.errors import AuditUnavailableError
from domain.model import (
    ExecutionContext,
    Principal,
    RequestContext,
    ToolCall,
    ToolResult,
    Variable,
    VariableSummary,
)

AUDIT_KEY = b"unit-test-audit-key"
T0 = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)


class FixedClock(Clock):
    """A clock that says what the test tells it to."""

    def __init__(self, moment: datetime = T0) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> datetime:
        self.moment += timedelta(seconds=seconds)
        return self.moment


class FailingAuditLog(AuditLog):
    """An audit trail that cannot be written: neither the outbox nor the spool."""

    async def record(self, event: AuditEvent) -> None:
        raise AuditUnavailableError()

    async def record_or_refuse(self, event: AuditEvent) -> None:
        raise AuditUnavailableError()


class ExplodingExecutionRepository(ExecutionRepository):
    """A system of record with a bug: every call raises something that is no DomainError."""

    async def get_context(self, execution_id: str) -> ExecutionContext:
        raise RuntimeError("the execution store is on fire")

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        raise RuntimeError("the execution store is on fire")

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        raise RuntimeError("the execution store is on fire")


class ExplodingVariableRepository(VariableRepository):
    """A variable store with a bug: every call raises something that is no DomainError."""

    async def get(self, user_id: str, key: str) -> Variable | None:
        raise RuntimeError("the variable store is on fire")

    async def put(self, user_id: str, key: str, value: Any, at: datetime) -> Variable:
        raise RuntimeError("the variable store is on fire")

    async def delete(self, user_id: str, key: str) -> bool:
        raise RuntimeError("the variable store is on fire")

    async def list(self, user_id: str) -> list[VariableSummary]:
        raise RuntimeError("the variable store is on fire")


class BlockingVariableRepository(InMemoryVariableRepository):
    """Reads that never finish until cancelled, like a store that stopped answering."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()

    async def get(self, user_id: str, key: str) -> Variable | None:
        self.reading.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class TimestampRecordingExecutions(InMemoryExecutionRepository):
    """The in-memory executions, keeping also the time each write was stamped with."""

    def __init__(self, executions: list[ExecutionContext] | None = None) -> None:
        super().__init__(executions)
        self.output_times: dict[str, datetime] = {}
        self.condition_times: dict[str, datetime] = {}

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        await super().save_output(execution_id, output, at)
        self.output_times[execution_id] = at

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await super().save_condition(execution_id, condition, at)
        self.condition_times[execution_id] = at


class StubToolGateway(ToolGateway):
    """Answers every call with `result`, or raises `error`; keeps the calls it was given."""

    def __init__(
        self,
        result: ToolResult | None = None,
        error: Exception | None = None,
    ) -> None:
        self.result = result or ToolResult(success=True, data={"sent": True})
        self.error = error
        self.calls: list[ToolCall] = []

    async def execute(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        if self.error is not None:
            raise self.error
        return self.result


def request_as(
    execution_id: str,
    user_id: str,
    *,
    event_id: str | None = None,
    job_id: str | None = None,
    request_id: str = "req-0001",
    client_address: str | None = "10.1.2.3",
) -> RequestContext:
    return RequestContext(
        principal=Principal(
            execution_id=execution_id, user_id=user_id, event_id=event_id, job_id=job_id
        ),
        request_id=request_id,
        client_address=client_address,
    )


@pytest.fixture
def alice() -> RequestContext:
    """A run of one of Alice's events."""
    return request_as(
        "exec-alice-1", "alice", event_id="event-7", job_id="job-11", request_id="req-a1"
    )


@pytest.fixture
def alice_next_run() -> RequestContext:
    """A later run of another of Alice's events."""
    return request_as(
        "exec-alice-2", "alice", event_id="event-8", job_id="job-12", request_id="req-a2"
    )


@pytest.fixture
def bob() -> RequestContext:
    """A run of one of Bob's events."""
    return request_as("exec-bob-1", "bob", event_id="event-9", job_id="job-13", request_id="req-b1")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def audit_log() -> InMemoryAuditLog:
    return InMemoryAuditLog()


@pytest.fixture
def audit(
    audit_log: InMemoryAuditLog, clock: FixedClock, request: pytest.FixtureRequest
) -> AuditRecorder:
    """The recorder; `indirect` with "fail_closed" makes it announce writes by an intent."""
    fail_closed = getattr(request, "param", None) == "fail_closed"
    return AuditRecorder(log=audit_log, clock=clock, key=AUDIT_KEY, fail_closed=fail_closed)


@pytest.fixture
def executions() -> TimestampRecordingExecutions:
    """The three executions the principals above were issued for, none with input yet."""
    return TimestampRecordingExecutions(
        [
            ExecutionContext(
                execution_id="exec-alice-1", user_id="alice", event_id="event-7", job_id="job-11"
            ),
            ExecutionContext(
                execution_id="exec-alice-2", user_id="alice", event_id="event-8", job_id="job-12"
            ),
            ExecutionContext(
                execution_id="exec-bob-1", user_id="bob", event_id="event-9", job_id="job-13"
            ),
        ]
    )


@pytest.fixture
def variables() -> InMemoryVariableRepository:
    return InMemoryVariableRepository()


@pytest.fixture
def tools() -> StubToolGateway:
    return StubToolGateway()


@pytest.fixture
def stranger() -> RequestContext:
    """A run of Alice's whose execution the system of record does not know."""
    return request_as("exec-unknown", "alice", request_id="req-s1")


@pytest.fixture
def fingerprint() -> Callable[[Any], str]:
    """The HMAC the audit trail must carry for a value, under the tests' audit key."""
    return lambda value: value_hmac(AUDIT_KEY, value)


@pytest.fixture
def failing_audit(clock: FixedClock) -> AuditRecorder:
    return AuditRecorder(log=FailingAuditLog(), clock=clock, key=AUDIT_KEY)


@pytest.fixture
def exploding_executions() -> ExplodingExecutionRepository:
    return ExplodingExecutionRepository()


@pytest.fixture
def exploding_variables() -> ExplodingVariableRepository:
    return ExplodingVariableRepository()


@pytest.fixture
def blocking_variables() -> BlockingVariableRepository:
    return BlockingVariableRepository()
