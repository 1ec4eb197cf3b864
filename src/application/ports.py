"""The ports the use cases and the edges need. Adapters implement them; fakes in the tests
and the in-memory adapters implement them too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import msgspec

from domain.audit import AuditEvent
from domain.model import (
    DependencyHealth,
    ExecutionContext,
    ExecutionOutcome,
    IdempotencyRecord,
    Principal,
    RateLimitDecision,
    StoredAnswer,
    ToolCall,
    ToolCallRecord,
    ToolResult,
    Variable,
    VariableSummary,
)


class ExecutionRepository(Protocol):
    """The system of record's executions."""

    async def get_context(self, execution_id: str) -> ExecutionContext:
        """The execution's context; raises `ExecutionNotFoundError` when it is not known.

        Its `start_time` is the system of record's or, when that has none, the time this
        context was first read, the same on every later read.
        """
        ...

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        """Record the execution's output; raises `ExecutionNotFoundError`."""
        ...

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        """Record the workflow condition; raises `ExecutionNotFoundError`."""
        ...


class ExecutionCatalog(Protocol):
    """Executions the runtime creates itself: the embedded system of record only."""

    async def create(self, context: ExecutionContext) -> None:
        """Keep a new execution; raises `ValueError` when its id is taken."""
        ...

    async def outcome(self, execution_id: str) -> ExecutionOutcome:
        """The output and condition the execution set; raises `ExecutionNotFoundError`."""
        ...


class VariableRepository(Protocol):
    """A user's variables, shared by every execution of that user."""

    async def get(self, user_id: str, key: str) -> Variable | None: ...

    async def put(self, user_id: str, key: str, value: Any, at: datetime) -> Variable: ...

    async def delete(self, user_id: str, key: str) -> bool:
        """Remove the variable; False when it was not set."""
        ...

    async def list(self, user_id: str) -> list[VariableSummary]: ...


class ToolGateway(Protocol):
    async def execute(self, call: ToolCall) -> ToolResult:
        """Run the tool action; raises `ToolNotFoundError`, `InvalidToolParamsError`."""
        ...


class ToolCallLog(Protocol):
    """The tool actions run for each execution, as they were answered."""

    async def record(self, record: ToolCallRecord) -> None: ...

    async def calls(self, execution_id: str) -> list[ToolCallRecord]:
        """The execution's tool calls, oldest first."""
        ...


class AuditLog(Protocol):
    """Where an operation's events are persisted before the reply (SPEC section 9): the
    outbox, from which a shipper delivers them to the sinks."""

    async def record(self, event: AuditEvent) -> None:
        """Persist the event durably before returning: in the outbox, or, while the outbox
        cannot be written, in the local spool, from which it moves to the outbox later."""
        ...

    async def record_or_refuse(self, event: AuditEvent) -> None:
        """Persist the event in the outbox, or raise `AuditUnavailableError` without
        spooling it: the intent of a state-changing operation under `audit.failClosed`."""
        ...


class AuditSinkUnavailableError(Exception):
    """The sink could not take the event now (down, timed out, 5xx): deliver it again later."""


class AuditSinkRejectedError(Exception):
    """The sink refused the event for good (a 4xx): sending it again cannot succeed."""


class AuditSink(Protocol):
    """One destination of the audit trail (SPEC section 6, `audit.sinks`).

    Delivery is at least once: a sink may see an event id again after a crash or a retry,
    and keeps one copy when it can (the store does; the backend deduplicates by `id`).
    """

    name: str

    async def deliver(self, event: AuditEvent) -> None:
        """Return once the sink holds the event durably; raise `AuditSinkUnavailableError`
        or `AuditSinkRejectedError`."""
        ...

    async def close(self) -> None:
        """Release what the sink holds open (files, sessions)."""
        ...


@runtime_checkable
class WireAuditSink(AuditSink, Protocol):
    """A sink that also takes an event in its wire form (SPEC section 9's JSON, UTF-8), as
    the outbox holds it: delivering the outbox's bytes spares decoding and encoding again."""

    async def deliver_wire(self, event: AuditEvent, wire: bytes) -> None:
        """`deliver(event)`, with `wire` the event's wire form."""
        ...


class AuditOutboxUnavailableError(Exception):
    """The outbox cannot be used now (Valkey away, the local store locked or full)."""


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the outbox hands it to the process that claimed it."""

    entry_id: str  # the outbox's own name for the entry (a stream id, a row number)
    event: AuditEvent
    # The event's wire form as the outbox holds it, handed to the sinks as it is (None: the
    # outbox does not keep it, and the shipper encodes the event).
    wire: bytes | None = None


class OutboxBacklog(msgspec.Struct, frozen=True, kw_only=True):
    pending: int  # events recorded and not yet acknowledged, claimed or not
    oldest_age: float | None  # seconds since the oldest of them was recorded; None: none


class AuditOutbox(Protocol):
    """The durable outbox (SPEC section 9): events wait here until every sink holds them.

    Each process is one consumer of it, under a name of its own; several processes may
    share one outbox, and an entry is claimed by one of them at a time.
    """

    async def append(self, event: AuditEvent) -> None:
        """Persist the event before returning; raises `AuditOutboxUnavailableError`."""
        ...

    async def claim(self, count: int) -> list[OutboxEntry]:
        """Up to `count` entries for this consumer, in this order: those it holds already
        (its claim renewed, so that no other consumer takes them), those another consumer
        left unacknowledged for longer than `audit.claimIdle` (it stopped), then new ones.
        Raises `AuditOutboxUnavailableError`."""
        ...

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """Every sink holds these entries' events: they are no longer pending. Raises
        `AuditOutboxUnavailableError`."""
        ...

    async def backlog(self) -> OutboxBacklog:
        """What is pending; raises `AuditOutboxUnavailableError`."""
        ...

    async def trim(self) -> int:
        """Drop acknowledged entries the outbox no longer keeps, never a pending one; how
        many were dropped. Raises `AuditOutboxUnavailableError`."""
        ...


class AuditSpool(Protocol):
    """Where events wait while the outbox cannot be written (a local file)."""

    async def append(self, event: AuditEvent) -> None:
        """Persist the event before returning; raises `OSError` when it cannot."""
        ...

    async def replay(self, into: Callable[[AuditEvent], Awaitable[None]]) -> int:
        """Hand spooled events to `into`, oldest first, forgetting each one it took; the
        number moved. The first error of `into` stops the replay and propagates, and the
        event it refused stays spooled with the rest."""
        ...


class AuditDeadLetters(Protocol):
    """Events a sink refused for good, kept so that none is lost."""

    async def keep(self, event: AuditEvent, sink: str, reason: str) -> None: ...


class AuditShippingObserver(Protocol):
    """What the shipper tells the edges, for metrics and logs (never a value: events carry
    none, and only their ids are named)."""

    def delivered(self, sink: str) -> None: ...

    def retrying(self, sink: str, error: str, delay: float, *, first: bool) -> None:
        """A delivery to `sink` failed and waits `delay` seconds; `first`: the sink was
        fine until now."""
        ...

    def recovered(self, sink: str) -> None:
        """`sink` took an event again after failing."""
        ...

    def rejected(self, sink: str, event_id: str, reason: str) -> None: ...

    def replayed(self, count: int) -> None:
        """`count` spooled events moved to the outbox."""
        ...

    def backlog(self, backlog: OutboxBacklog) -> None: ...

    def trouble(self, what: str, error: BaseException) -> None:
        """Something the shipper will try again failed (the outbox, the spool, a bug)."""
        ...


class AuditTrail(Protocol):
    """The audit events kept where this process can read them back."""

    async def events_of(self, execution_id: str) -> list[AuditEvent]:
        """The execution's events, oldest first."""
        ...

    async def latest(self, *, execution_id: str | None, limit: int) -> list[AuditEvent]:
        """The newest `limit` events (of one execution, or of all), oldest first."""
        ...


class RefusalTally(Protocol):
    """Requests the rate limit refused, counted per execution and minute by every process
    that shares the limit, so that `rate_limited` is recorded once per minute in all."""

    async def add(self, execution_id: str, minute: int) -> int:
        """Count one refusal in `minute` (whole minutes since the epoch, UTC); the count so
        far, 1 for the minute's first refusal anywhere."""
        ...

    async def count(self, execution_id: str, minute: int) -> int:
        """The refusals counted in `minute`; 0 once the tally has forgotten it."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal:
        """The token's principal; raises an `AuthenticationError` subclass."""
        ...


class TokenIssuer(Protocol):
    def issue(self, principal: Principal, ttl_seconds: float) -> str:
        """A signed token for `principal`, valid for `ttl_seconds`."""
        ...


class RevocationList(Protocol):
    """Executions whose tokens are refused, on every process, until they could have expired."""

    async def revoke(self, execution_id: str, ttl: float) -> None:
        """Refuse the execution's tokens for the next `ttl` seconds (never shortening an
        earlier revocation)."""
        ...

    async def is_revoked(self, execution_id: str) -> bool: ...


class RateLimiter(Protocol):
    async def acquire(self, key: str) -> RateLimitDecision:
        """Take one request from `key`'s bucket, or say when the next one is allowed."""
        ...


class IdempotencyStore(Protocol):
    """Answers kept under an Idempotency-Key, shared by every replica."""

    async def begin(
        self, scope: str, key: str, request_hash: str, ttl: float
    ) -> IdempotencyRecord | None:
        """Claim `key` for a request: None when this caller now owns it (the request should
        run), else the record already there (running, or finished with its answer)."""
        ...

    async def complete(self, scope: str, key: str, answer: StoredAnswer, ttl: float) -> None:
        """Keep the owner's answer for `ttl` seconds."""
        ...

    async def abandon(self, scope: str, key: str) -> None:
        """Forget a claim whose request failed in a way a repeat may retry (a 5xx)."""
        ...


@runtime_checkable
class HealthProbe(Protocol):
    name: str

    async def check(self) -> DependencyHealth: ...
