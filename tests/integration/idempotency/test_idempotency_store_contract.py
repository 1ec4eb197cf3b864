"""The `IdempotencyStore` contract, held by the in-memory, SQLite and Valkey adapters, and
what the Valkey adapter does when Valkey does not answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.memory.idempotency import InMemoryIdempotencyStore
from adapters.sqlite.idempotency import SqliteIdempotencyStore
from adapters.sqlite.store import SqliteStore
from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import ValkeyGate
from adapters.valkey.idempotency import IdempotencyUnavailableError, ValkeyIdempotencyStore
from application.ports import IdempotencyStore
from domain.errors import BackendUnavailableError
from domain.model import IdempotencyRecord, StoredAnswer

SCOPE = "exec-7f3a:tool-actions/execute"
TTL = 3600.0
ANSWER = StoredAnswer(
    status=200,
    headers=[("content-type", "application/json")],
    body='{"success":true,"data":"grüße ✓"}'.encode(),
)


@dataclass
class Subject:
    """One adapter under test: `replica()` opens a store on the same records (another
    process's, for SQLite and Valkey); `pass_time` moves its clock (Valkey's by sleeping:
    it keeps its own)."""

    replica: Callable[[], Awaitable[IdempotencyStore]]
    pass_time: Callable[[float], Awaitable[None]]
    short_ttl: float


@pytest.fixture(params=["memory", "sqlite", "valkey"])
def subject(request: pytest.FixtureRequest, clock: Any) -> Subject:
    async def advance(seconds: float) -> None:
        clock.advance(seconds)

    if request.param == "memory":
        memory = InMemoryIdempotencyStore(clock)

        async def same() -> IdempotencyStore:
            return memory

        return Subject(same, advance, 5.0)
    if request.param == "sqlite":
        open_sqlite: Callable[[], Awaitable[SqliteStore]] = request.getfixturevalue("open_sqlite")

        async def sqlite_replica() -> IdempotencyStore:
            return SqliteIdempotencyStore(await open_sqlite(), clock)

        return Subject(sqlite_replica, advance, 5.0)
    open_valkey: Callable[[], ValkeyClient] = request.getfixturevalue("open_valkey")

    async def valkey_replica() -> IdempotencyStore:
        return ValkeyIdempotencyStore(client=open_valkey(), gate=ValkeyGate())

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return Subject(valkey_replica, sleep, 0.3)


@pytest.fixture
async def store(subject: Subject) -> IdempotencyStore:
    return await subject.replica()


async def test_the_first_claim_owns_the_key(store: IdempotencyStore) -> None:
    assert await store.begin(SCOPE, "k-1", "hash-a", TTL) is None


async def test_a_claim_while_running_sees_the_running_record(
    store: IdempotencyStore, subject: Subject
) -> None:
    await store.begin(SCOPE, "k-1", "hash-a", TTL)
    other = await subject.replica()
    assert await other.begin(SCOPE, "k-1", "hash-a", TTL) == IdempotencyRecord(
        request_hash="hash-a"
    )
    # Another body's hash is visible, so the caller can tell a conflict.
    found = await other.begin(SCOPE, "k-1", "hash-b", TTL)
    assert found is not None
    assert found.request_hash == "hash-a"
    assert found.answer is None


async def test_a_completed_answer_is_replayed_exactly(
    store: IdempotencyStore, subject: Subject
) -> None:
    await store.begin(SCOPE, "k-1", "hash-a", TTL)
    await store.complete(SCOPE, "k-1", ANSWER, TTL)
    other = await subject.replica()
    assert await other.begin(SCOPE, "k-1", "hash-a", TTL) == IdempotencyRecord(
        request_hash="hash-a", answer=ANSWER
    )
    found = await other.begin(SCOPE, "k-1", "hash-b", TTL)
    assert found == IdempotencyRecord(request_hash="hash-a", answer=ANSWER)


async def test_answers_of_every_shape_survive(store: IdempotencyStore) -> None:
    answers = [
        StoredAnswer(status=409, headers=[], body=b""),
        StoredAnswer(status=201, headers=[("a", "1"), ("a", "2")], body=bytes(range(256))),
    ]
    for n, answer in enumerate(answers):
        await store.begin(SCOPE, f"k-{n}", "h", TTL)
        await store.complete(SCOPE, f"k-{n}", answer, TTL)
        found = await store.begin(SCOPE, f"k-{n}", "h", TTL)
        assert found is not None
        assert found.answer == answer


async def test_keys_and_scopes_are_apart(store: IdempotencyStore) -> None:
    await store.begin(SCOPE, "k-1", "hash-a", TTL)
    assert await store.begin(SCOPE, "k-2", "hash-a", TTL) is None
    assert await store.begin("exec-other:tool-actions/execute", "k-1", "h", TTL) is None
    assert await store.begin("exec-7f3a:executions/output", "k-1", "h", TTL) is None
    # Odd characters in scopes and keys, braces included (Valkey's hash tags).
    assert await store.begin("{x}:a}b", "{k} ~ ü", "h", TTL) is None
    assert await store.begin("{x}:a}b", "{k} ~ ü", "h", TTL) == IdempotencyRecord(request_hash="h")


async def test_an_abandoned_claim_is_free_again(store: IdempotencyStore) -> None:
    await store.begin(SCOPE, "k-1", "hash-a", TTL)
    await store.abandon(SCOPE, "k-1")
    assert await store.begin(SCOPE, "k-1", "hash-b", TTL) is None
    # Abandoning what is not there is no error.
    await store.abandon(SCOPE, "never-claimed")


async def test_a_completed_record_expires_after_its_ttl(
    store: IdempotencyStore, subject: Subject
) -> None:
    ttl = subject.short_ttl
    await store.begin(SCOPE, "k-1", "hash-a", TTL)
    await store.complete(SCOPE, "k-1", ANSWER, ttl)
    await subject.pass_time(ttl * 0.3)
    found = await store.begin(SCOPE, "k-1", "hash-a", TTL)
    assert found is not None
    assert found.answer == ANSWER
    await subject.pass_time(ttl * 1.2)
    assert await store.begin(SCOPE, "k-1", "hash-b", TTL) is None
    assert await store.begin(SCOPE, "k-1", "hash-a", TTL) == IdempotencyRecord(
        request_hash="hash-b"
    )


async def test_a_running_claim_expires_after_its_ttl(
    store: IdempotencyStore, subject: Subject
) -> None:
    ttl = subject.short_ttl
    await store.begin(SCOPE, "k-1", "hash-a", ttl)
    await subject.pass_time(ttl * 1.5)
    assert await store.begin(SCOPE, "k-1", "hash-b", TTL) is None


async def test_of_concurrent_claims_exactly_one_wins(
    store: IdempotencyStore, subject: Subject
) -> None:
    stores = [store, *[await subject.replica() for _ in range(3)]]
    for n in range(10):
        key = f"race-{n}"
        results = await asyncio.gather(
            *(store.begin(SCOPE, key, f"hash-{i}", TTL) for i, store in enumerate(stores))
        )
        winners = [i for i, result in enumerate(results) if result is None]
        assert len(winners) == 1, results
        for result in results:
            assert result is None or result.request_hash == f"hash-{winners[0]}"


# --- the Valkey adapter's own


async def test_valkey_keeps_one_hash_per_key_under_the_scope_tag(
    open_valkey: Callable[[], ValkeyClient],
) -> None:
    client = open_valkey()
    store = ValkeyIdempotencyStore(client=client, gate=ValkeyGate(), running_ttl=60)
    await store.begin(SCOPE, "k-1", "hash-a", TTL)
    name = f"cronium:idem:{{{SCOPE}}}:k-1"
    assert store.record_key(SCOPE, "k-1") == name
    assert await client.hgetall(name) == {b"hash": b"hash-a"}
    assert 55_000 < await client.pttl(name) <= 60_000  # a claim lives running_ttl
    await store.complete(SCOPE, "k-1", ANSWER, TTL)
    assert TTL * 1000 - 5_000 < await client.pttl(name) <= TTL * 1000
    await store.abandon(SCOPE, "k-1")
    assert await client.exists(name) == 0
    # An abandoned claim is not brought back by a late completion.
    await store.complete(SCOPE, "k-1", ANSWER, TTL)
    assert await client.exists(name) == 0


async def test_valkey_down_falls_back_to_the_local_store(
    open_valkey: Callable[[], ValkeyClient], valkey_server: Any
) -> None:
    fallback = InMemoryIdempotencyStore()
    fell_back: list[str] = []
    gate = ValkeyGate(on_fallback=fell_back.append, first_pause=60)
    store = ValkeyIdempotencyStore(client=open_valkey(), gate=gate, fallback=fallback)
    await store.begin(SCOPE, "before", "h", TTL)  # kept in Valkey
    valkey_server.stop()

    assert await store.begin(SCOPE, "k-1", "hash-a", TTL) is None
    assert fell_back == ["idempotency"]
    assert await store.begin(SCOPE, "k-1", "hash-a", TTL) == IdempotencyRecord(
        request_hash="hash-a"
    )
    await store.complete(SCOPE, "k-1", ANSWER, TTL)
    found = await store.begin(SCOPE, "k-1", "hash-a", TTL)
    assert found is not None
    assert found.answer == ANSWER
    assert await fallback.begin(SCOPE, "k-1", "x", TTL) == found  # it is the fallback's
    # Completing or abandoning a Valkey claim while Valkey is down is no error.
    await store.complete(SCOPE, "before", ANSWER, TTL)
    await store.abandon(SCOPE, "before")
    await store.begin(SCOPE, "k-2", "h", TTL)
    await store.abandon(SCOPE, "k-2")
    assert await fallback.begin(SCOPE, "k-2", "h", TTL) is None


async def test_valkey_down_without_a_fallback_is_a_503(
    open_valkey: Callable[[], ValkeyClient], valkey_server: Any
) -> None:
    gate = ValkeyGate()
    store = ValkeyIdempotencyStore(client=open_valkey(), gate=gate)
    valkey_server.stop()
    with pytest.raises(IdempotencyUnavailableError) as raised:
        await store.begin(SCOPE, "k-1", "hash-a", TTL)
    assert isinstance(raised.value, BackendUnavailableError)
    assert raised.value.code == "BACKEND_UNAVAILABLE"
    # The gate is now pausing: the next claim fails at once, without a timeout.
    assert not gate.open
    with pytest.raises(IdempotencyUnavailableError):
        await store.begin(SCOPE, "k-1", "hash-a", TTL)


async def test_valkey_back_is_used_again(
    open_valkey: Callable[[], ValkeyClient], valkey_server: Any, clock: Any
) -> None:
    fallback = InMemoryIdempotencyStore()
    gate = ValkeyGate(clock=clock)
    store = ValkeyIdempotencyStore(client=open_valkey(), gate=gate, fallback=fallback)
    valkey_server.stop()
    assert await store.begin(SCOPE, "k-1", "hash-a", TTL) is None
    valkey_server.start()
    clock.advance(60)
    assert await store.begin(SCOPE, "k-2", "hash-a", TTL) is None
    assert await store.begin(SCOPE, "k-2", "hash-a", TTL) == IdempotencyRecord(
        request_hash="hash-a"
    )
    assert await fallback.begin(SCOPE, "k-2", "h", TTL) is None  # not the fallback's
    # The claim made during the outage still completes where it was made.
    await store.complete(SCOPE, "k-1", ANSWER, TTL)
    found = await fallback.begin(SCOPE, "k-1", "hash-a", TTL)
    assert found is not None
    assert found.answer == ANSWER


async def test_sqlite_purges_expired_rows(
    open_sqlite: Callable[[], Awaitable[SqliteStore]], clock: Any
) -> None:
    sqlite = await open_sqlite()
    store = SqliteIdempotencyStore(sqlite, clock)
    for n in range(5):
        await store.begin(SCOPE, f"old-{n}", "h", 10)
    clock.advance(11)
    await store.begin(SCOPE, "new", "h", 10)
    count = await sqlite.read(lambda c: c.execute("SELECT COUNT(*) FROM idempotency").fetchone())
    assert count == (1,)
