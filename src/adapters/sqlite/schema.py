"""The local store's schema, as an ordered list of migrations.

Migration N (1-based) takes a file from `PRAGMA user_version` N-1 to N. A migration is a
tuple of single statements rather than one script: `executescript` would commit the
transaction that keeps two processes starting at once from both migrating.
Never edit a released migration; append a new one.
"""

from __future__ import annotations

# JSON columns hold `msgspec.json.encode(...)` as text; timestamps are ISO-8601 UTC with
# microseconds and `Z` (see `store.encode_time`), so they also sort as text.
_V1: tuple[str, ...] = (
    # The system of record in embedded mode. `start_time` stays NULL until the context is
    # first read (the port's rule); `has_output` tells an output of `null` from none.
    """
    CREATE TABLE executions (
        execution_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        job_id TEXT,
        event_id TEXT,
        metadata TEXT NOT NULL,
        event TEXT,
        user TEXT,
        start_time TEXT,
        created_at TEXT NOT NULL,
        has_output INTEGER NOT NULL DEFAULT 0,
        output TEXT,
        output_at TEXT,
        condition INTEGER,
        condition_at TEXT
    )
    """,
    # A stored JSON `null` is a variable whose value is None; a missing row is no variable.
    """
    CREATE TABLE variables (
        user_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (user_id, key)
    )
    """,
    # No foreign key to executions: with a backend the executions live there, while tool
    # calls and audit events are kept here in every mode.
    """
    CREATE TABLE tool_calls (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        execution_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        tool TEXT NOT NULL,
        action TEXT NOT NULL,
        params TEXT NOT NULL,
        result TEXT NOT NULL,
        request_id TEXT NOT NULL,
        at TEXT NOT NULL
    )
    """,
    "CREATE INDEX tool_calls_by_execution ON tool_calls (execution_id, seq)",
    # The "store" audit sink. `execution_id` is NULL for an `auth_denied` without one.
    """
    CREATE TABLE audit_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        execution_id TEXT,
        action TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        event TEXT NOT NULL
    )
    """,
    "CREATE INDEX audit_events_by_execution ON audit_events (execution_id, seq)",
    # For the audit issue: events persisted before the reply and delivered to the sinks by
    # a worker that claims them (`claimed_by`/`claimed_at`, so that several processes on one
    # file do not send an event twice) and retries with backoff. No code uses it yet.
    """
    CREATE TABLE audit_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        event TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        claimed_by TEXT,
        claimed_at TEXT
    )
    """,
    "CREATE INDEX audit_outbox_due ON audit_outbox (next_attempt_at)",
    # For the backend issue: Idempotency-Key records when Valkey is absent (SPEC section 4).
    # `scope` is the execution and route; a 'running' row answers a repeat with 409.
    """
    CREATE TABLE idempotency (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done')),
        status INTEGER,
        headers TEXT,
        body BLOB,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (scope, key)
    )
    """,
    "CREATE INDEX idempotency_by_expiry ON idempotency (expires_at)",
    # For the security issue: executions whose tokens were revoked, kept until the last
    # token could have expired.
    """
    CREATE TABLE revocations (
        execution_id TEXT PRIMARY KEY,
        revoked_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX revocations_by_expiry ON revocations (expires_at)",
)

# The audit outbox in use (the audit issue).
_V2: tuple[str, ...] = (
    # Events a sink refused for good (a 4xx), kept so that none is lost: one row per event
    # and sink, `reason` being what the sink said.
    """
    CREATE TABLE audit_dead_letters (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        sink TEXT NOT NULL,
        event TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        UNIQUE (id, sink)
    )
    """,
    # A claim looks up a consumer's own rows, and rows claimed before a time.
    "CREATE INDEX audit_outbox_by_claim ON audit_outbox (claimed_by, claimed_at)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
