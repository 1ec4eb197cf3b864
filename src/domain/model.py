"""The runtime's model: who is asking, what an execution is, and the values scripts move."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from domain.errors import InvalidKeyError

MAX_KEY_LENGTH = 255


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The verified claims of an execution token."""

    execution_id: str
    user_id: str
    event_id: str | None = None
    job_id: str | None = None
    expires_at: int | None = None


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    """What every command carries so that a use case can audit without knowing the transport."""

    principal: Principal
    request_id: str
    client_address: str | None = None


class ExecutionContext(msgspec.Struct, frozen=True, kw_only=True):
    """An execution as the system of record describes it. It never changes once created."""

    execution_id: str
    user_id: str
    job_id: str | None = None
    event_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    event: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    start_time: datetime | None = None

    @property
    def input(self) -> Any:
        return self.metadata.get("input")


class Variable(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    value: Any
    updated_at: datetime


class VariableSummary(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    updated_at: datetime


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool action a script asked for, with who asked."""

    execution_id: str
    user_id: str
    tool: str
    action: str
    params: dict[str, Any]
    request_id: str


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a tool answered. `success: false` is an answer, not an error: it is never retried."""

    success: bool
    data: Any = None
    error: str | None = None
    code: str | None = None
    metadata: dict[str, Any] | None = None


class ToolCallRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A tool action as it was run: what was asked and what the tool answered."""

    call: ToolCall
    result: ToolResult
    at: datetime


class ExecutionOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What an execution told the runtime: its output (when it set one) and its condition."""

    execution_id: str
    has_output: bool = False
    output: Any = None
    condition: bool | None = None


class WrittenVariable(msgspec.Struct, frozen=True, kw_only=True):
    """A variable an execution wrote, as it stands now; `exists` is False once deleted."""

    exists: bool
    value: Any = None


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True):
    """What an execution did, for the person who ran it."""

    outcome: ExecutionOutcome
    variables_read: list[str]
    variables_written: dict[str, WrittenVariable]
    tool_calls: list[ToolCallRecord]
    audit_events: int


class StoredAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """An answer kept under an Idempotency-Key, replayed for a repeat of the same request."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class IdempotencyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What an Idempotency-Key holds: the request's fingerprint and, once it finished, its
    answer (None while the first request is still running)."""

    request_hash: str
    answer: StoredAnswer | None = None


class RateLimitDecision(msgspec.Struct, frozen=True, kw_only=True):
    """One request's verdict from a token bucket of `limit` requests refilled over a minute.

    `reset_after` is whole seconds, rounded up: until the bucket is full again while requests
    remain, or until the next request is allowed when none remain.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: int


class DependencyHealth(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # "up", "down" or "disabled"
    latency_ms: float = 0.0
    error: str | None = None

    @property
    def is_up(self) -> bool:
        return self.status != "down"


def validate_variable_key(key: str) -> str:
    """Return `key` if it may name a variable, else raise `InvalidKeyError` saying why."""
    if not key:
        raise InvalidKeyError("the variable key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"the variable key has {len(key)} characters; at most {MAX_KEY_LENGTH} are allowed"
        )
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in key):
        raise InvalidKeyError("the variable key contains control characters")
    # A key is one opaque name; '.' and '..' segments would be rewritten by any proxy or
    # backend that normalises the URL the key travels in.
    if any(segment in {".", ".."} for segment in key.split("/")):
        raise InvalidKeyError("the variable key must not contain '.' or '..' path segments")
    return key


def utc_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and `Z`, the one timestamp format on the wire."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )
