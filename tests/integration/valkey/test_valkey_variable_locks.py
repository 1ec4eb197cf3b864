"""`ValkeyVariableCache`'s per-key lock and the races SPEC section 7 guards against.

The lock (owner token, wait, deadline, expiry, owner-only release), and the fill races driven
step by step with a store that holds a call until the test lets it go: a reader that fetched
the store's old value must never put it back over what a write (or a delete) cached.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from adapter_kit import (
    AT,
    LATER,
    TTL,
    WAIT,
    MakeCache,
    ManualClock,
    ObservedVariables,
    OpenClient,
    cached_entry,
)

from adapters.valkey.client import ValkeyClient
from adapters.valkey.variables import ValkeyVariableCache
from domain.errors import DeadlineExceededError
from domain.model import Variable

# ------------------------------------------------------------------------------- lock


async def test_a_writer_waits_while_the_lock_is_held_and_proceeds_once_it_is_released(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient
) -> None:
    lock_key = cache.lock_key("u1", "k")
    assert await raw.set(lock_key, "another-writer", nx=True, px=10_000)

    writing = asyncio.create_task(cache.put("u1", "k", "mine", AT))
    await asyncio.sleep(0.3)
    assert not writing.done()
    assert store.calls["put"] == 0  # waiting, neither failed nor written

    await raw.delete(lock_key)
    written = await asyncio.wait_for(writing, 1.0)

    assert written.value == "mine"
    assert (await cache.get("u1", "k")) == written
    assert await raw.exists(lock_key) == 0


async def test_a_lock_held_longer_than_lock_wait_gives_deadline_exceeded(
    make_cache: MakeCache, open_client: OpenClient, url: str, store: ObservedVariables,
    raw: ValkeyClient,
) -> None:  # fmt: skip
    cache = make_cache(open_client(url), store, lock_wait=0.3)
    lock_key = cache.lock_key("u1", "k")
    assert await raw.set(lock_key, "another-writer", nx=True, px=10_000)

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await cache.put("u1", "k", "mine", AT)
    with pytest.raises(DeadlineExceededError):
        await cache.delete("u1", "k")

    assert time.monotonic() - started < 2 * (0.3 + 0.2)
    assert store.calls["put"] == store.calls["delete"] == 0
    assert await raw.get(lock_key) == b"another-writer"


async def test_an_expired_lock_is_taken_over(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient
) -> None:
    lock_key = cache.lock_key("u1", "k")
    assert await raw.set(lock_key, "a-writer-that-died", nx=True, px=200)

    started = time.monotonic()
    written = await asyncio.wait_for(cache.put("u1", "k", "mine", AT), 1.5)

    assert time.monotonic() - started >= 0.15
    assert written.value == "mine"
    assert await raw.exists(lock_key) == 0


async def test_the_lock_expires_after_lock_ttl_and_holds_a_random_token(
    make_cache: MakeCache, open_client: OpenClient, url: str, store: ObservedVariables,
    raw: ValkeyClient,
) -> None:  # fmt: skip
    cache = make_cache(open_client(url), store, lock_ttl=1.5)
    lock_key = cache.lock_key("u1", "k")
    tokens: list[bytes] = []

    async def look() -> None:
        token = await raw.get(lock_key)
        assert token is not None
        tokens.append(token)
        assert 1000 < await raw.pttl(lock_key) <= 1500

    store.before["put"] = look
    await cache.put("u1", "k", 1, AT)
    await cache.put("u1", "k", 2, AT)

    assert len(tokens) == 2
    assert tokens[0] != tokens[1]
    assert len(tokens[0]) >= 16


async def test_a_release_deletes_only_the_lock_its_owner_still_holds(
    make_cache: MakeCache, open_client: OpenClient, url: str, store: ObservedVariables,
    raw: ValkeyClient,
) -> None:  # fmt: skip
    cache = make_cache(open_client(url), store, lock_ttl=5.0)
    lock_key = cache.lock_key("u1", "k")
    hold = store.hold_next("put")
    writing = asyncio.create_task(cache.put("u1", "k", "slow", AT))
    await hold.wait_reached()
    mine = await raw.get(lock_key)
    assert mine is not None

    # As if the lock had expired and another writer had taken it with its own token.
    await raw.set(lock_key, "someone-else", px=10_000)
    hold.release()
    await asyncio.wait_for(writing, WAIT)

    assert await raw.get(lock_key) == b"someone-else"


async def test_the_release_script_compares_the_owner_token(
    cache: ValkeyVariableCache, raw: ValkeyClient
) -> None:
    lock_key = cache.lock_key("u1", "k")
    await raw.set(lock_key, "theirs", px=10_000)

    assert await cache._release(keys=[lock_key], args=["mine"]) == 0
    assert await raw.get(lock_key) == b"theirs"
    assert await cache._release(keys=[lock_key], args=["theirs"]) == 1
    assert await raw.exists(lock_key) == 0


async def test_a_read_that_misses_while_a_write_holds_the_lock_does_not_fill(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient
) -> None:
    await store.inner.put("u1", "k", "v", AT)
    await raw.set(cache.lock_key("u1", "k"), "a-writer", px=10_000)

    assert (await cache.get("u1", "k")) == Variable(key="k", value="v", updated_at=AT)

    assert await raw.exists(cache.value_key("u1", "k")) == 0


async def test_a_writer_that_lost_its_lock_does_not_overwrite_the_next_writers_entry(
    make_cache: MakeCache, open_client: OpenClient, url: str, store: ObservedVariables,
) -> None:  # fmt: skip
    slow = make_cache(open_client(url), store, lock_ttl=0.2)
    fast = make_cache(open_client(url), store, lock_ttl=5.0, lock_wait=2.0)
    hold = store.hold_next("put")
    slow_write = asyncio.create_task(slow.put("u1", "k", "slow A", AT))
    await hold.wait_reached()  # A wrote the store, then stalled past its lock's TTL

    await asyncio.wait_for(fast.put("u1", "k", "fast B", LATER), WAIT)  # takes the lock
    hold.release()
    await asyncio.wait_for(slow_write, WAIT)

    stored = await store.inner.get("u1", "k")
    assert stored is not None
    assert stored.value == "fast B"
    assert await fast.get("u1", "k") == stored


# ------------------------------------------------------------------------- fill races


async def test_a_stale_fill_after_a_write_keeps_the_written_value(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache, store: ObservedVariables,
    raw: ValkeyClient,
) -> None:  # fmt: skip
    await store.inner.put("u1", "k", "old", AT)
    hold = store.hold_next("get")
    reading = asyncio.create_task(replica.get("u1", "k"))
    await hold.wait_reached()  # the reader has the store's old value, not yet filled

    await cache.put("u1", "k", "new", LATER)  # the write completes: the cache holds "new"
    hold.release()
    old = await asyncio.wait_for(reading, WAIT)  # ... and now the reader's fill runs

    assert old is not None
    assert old.value == "old"
    entry = await cached_entry(raw, cache.value_key("u1", "k"))
    assert entry is not None
    assert entry.value == "new"
    assert (await replica.get("u1", "k")) == Variable(key="k", value="new", updated_at=LATER)


async def test_a_stale_fill_after_a_delete_keeps_the_tombstone(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache, store: ObservedVariables,
    raw: ValkeyClient,
) -> None:  # fmt: skip
    await store.inner.put("u1", "k", "old", AT)
    hold = store.hold_next("get")
    reading = asyncio.create_task(replica.get("u1", "k"))
    await hold.wait_reached()

    assert await cache.delete("u1", "k") is True
    hold.release()
    await asyncio.wait_for(reading, WAIT)

    entry = await cached_entry(raw, cache.value_key("u1", "k"))
    assert entry is not None
    assert entry.exists is False
    assert await replica.get("u1", "k") is None
    assert await cache.get("u1", "k") is None


async def test_a_refresh_past_ttl_that_raced_a_write_keeps_the_written_value(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache, store: ObservedVariables,
    raw: ValkeyClient, clock: ManualClock,
) -> None:  # fmt: skip
    await cache.put("u1", "k", "first", AT)
    clock.advance(TTL + 1)  # the entry is past its TTL: the next read refreshes it
    hold = store.hold_next("get")
    reading = asyncio.create_task(replica.get("u1", "k"))
    await hold.wait_reached()

    await cache.put("u1", "k", "second", LATER)
    hold.release()
    await asyncio.wait_for(reading, WAIT)

    entry = await cached_entry(raw, cache.value_key("u1", "k"))
    assert entry is not None
    assert entry.value == "second"


async def test_a_fill_that_raced_nothing_is_written(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient
) -> None:
    await store.inner.put("u1", "k", "only", AT)
    hold = store.hold_next("get")
    reading = asyncio.create_task(cache.get("u1", "k"))
    await hold.wait_reached()
    hold.release()
    await asyncio.wait_for(reading, WAIT)

    entry = await cached_entry(raw, cache.value_key("u1", "k"))
    assert entry is not None
    assert entry.value == "only"


# ------------------------------------------------------------------- many writers


async def test_fifty_concurrent_puts_through_two_replicas_leave_the_stores_final_value(
    make_cache: MakeCache, open_client: OpenClient, url: str, store: ObservedVariables,
    fallbacks: list[str],
) -> None:  # fmt: skip
    # Pools as large as the concurrency: with fewer connections valkey-py refuses the extra
    # commands, which falls back (see test_more_calls_in_flight_than_pool_size_...).
    writers = [
        make_cache(open_client(url, pool_size=64), store),
        make_cache(open_client(url, pool_size=64), store),
    ]

    async def write(index: int) -> None:
        await writers[index % 2].put("u1", "hot", {"writer": index}, AT + timedelta(seconds=index))

    async with asyncio.timeout(10):
        await asyncio.gather(*(write(index) for index in range(50)))

    final = await store.inner.get("u1", "hot")
    assert final is not None
    assert await writers[0].get("u1", "hot") == final
    assert await writers[1].get("u1", "hot") == final
    assert store.calls["put"] == 50
    assert store.calls["get"] == 0  # both read it from the cache
    assert fallbacks == []  # every write held the lock
