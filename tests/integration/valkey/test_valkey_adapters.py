"""`ValkeyVariableCache` against a real valkey-server, over an in-memory store.

The read-through fill, tombstones, write order (store, then cache), TTL and stale serving
on an injected clock, exact round-trips, two "replicas" (two clients on one Valkey and one
shared store), the per-key lock with its owner token, and the fill races of SPEC section 7
driven step by step.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from adapter_kit import (
    AT,
    LATER,
    STALE_WINDOW,
    TTL,
    VALUES,
    ManualClock,
    ObservedVariables,
    cached_entry,
    same_json,
)

from adapters.valkey.client import ValkeyClient
from adapters.valkey.variables import CachedVariable, ValkeyVariableCache
from domain.errors import BackendUnavailableError
from domain.model import Variable

# ------------------------------------------------------------------------ read-through


async def test_a_read_fills_the_cache_and_a_second_read_does_not_reach_the_store(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient
) -> None:
    await store.inner.put("u1", "k", {"n": 1}, AT)
    value_key = cache.value_key("u1", "k")
    assert await raw.exists(value_key) == 0

    first = await cache.get("u1", "k")
    assert await raw.exists(value_key) == 1
    second = await cache.get("u1", "k")

    assert first == second == Variable(key="k", value={"n": 1}, updated_at=AT)
    assert store.calls["get"] == 1
    assert await raw.pttl(value_key) > (TTL + STALE_WINDOW - 10) * 1000


async def test_a_missing_variable_is_cached_as_a_tombstone(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient
) -> None:
    assert await cache.get("u1", "missing") is None

    entry = await cached_entry(raw, cache.value_key("u1", "missing"))
    assert entry is not None
    assert entry.exists is False
    assert await cache.get("u1", "missing") is None
    assert store.calls["get"] == 1


async def test_a_put_writes_the_store_then_the_cache(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient
) -> None:
    await store.inner.put("u1", "k", "old", AT)
    assert (await cache.get("u1", "k")) is not None  # the old value is cached
    value_key = cache.value_key("u1", "k")
    seen_while_storing: list[CachedVariable | None] = []

    async def look() -> None:
        seen_while_storing.append(await cached_entry(raw, value_key))

    store.before["put"] = look

    written = await cache.put("u1", "k", "new", LATER)

    assert written == Variable(key="k", value="new", updated_at=LATER)
    [during] = seen_while_storing
    assert during is not None
    assert during.value == "old"  # the cache did not move before the store did
    after = await cached_entry(raw, value_key)
    assert after is not None
    assert (after.exists, after.value, after.updated_at) == (True, "new", LATER)
    assert await store.inner.get("u1", "k") == written
    assert await raw.exists(cache.lock_key("u1", "k")) == 0  # released


async def test_a_delete_leaves_a_tombstone_and_a_read_after_it_gives_none(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache, store: ObservedVariables,
    raw: ValkeyClient,
) -> None:  # fmt: skip
    await cache.put("u1", "k", "v", AT)
    assert (await replica.get("u1", "k")) is not None

    assert await cache.delete("u1", "k") is True

    entry = await cached_entry(raw, cache.value_key("u1", "k"))
    assert entry is not None
    assert entry.exists is False
    assert await replica.get("u1", "k") is None
    assert await cache.get("u1", "k") is None
    assert store.calls["get"] == 0  # every read was answered by the cache
    assert await cache.delete("u1", "k") is False  # the store's answer, not the cache's


async def test_an_entry_of_another_format_is_a_miss_and_is_replaced(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient
) -> None:
    await store.inner.put("u1", "k", "v", AT)
    value_key = cache.value_key("u1", "k")
    await raw.set(value_key, b"\xff not json at all")

    assert await cache.get("u1", "k") == Variable(key="k", value="v", updated_at=AT)

    entry = await cached_entry(raw, value_key)
    assert entry is not None
    assert entry.value == "v"


# ------------------------------------------------------------------------ TTL and stale


async def test_an_entry_past_its_ttl_is_read_again_from_the_store_and_refreshed(
    cache: ValkeyVariableCache, store: ObservedVariables, raw: ValkeyClient,
    clock: ManualClock,
) -> None:  # fmt: skip
    await cache.put("u1", "k", "first", AT)
    await store.inner.put("u1", "k", "changed behind the cache", LATER)
    value_key = cache.value_key("u1", "k")

    clock.advance(TTL - 1)
    assert (await cache.get("u1", "k")) == Variable(key="k", value="first", updated_at=AT)
    assert store.calls["get"] == 0

    clock.advance(2)  # past the TTL
    refreshed = await cache.get("u1", "k")

    assert refreshed == Variable(key="k", value="changed behind the cache", updated_at=LATER)
    assert store.calls["get"] == 1
    entry = await cached_entry(raw, value_key)
    assert entry is not None
    assert (entry.value, entry.cached_at) == ("changed behind the cache", clock.now)
    assert (await cache.get("u1", "k")) == refreshed
    assert store.calls["get"] == 1  # fresh again


async def test_while_the_store_is_down_an_entry_past_ttl_is_served_within_the_stale_window(
    cache: ValkeyVariableCache, store: ObservedVariables, clock: ManualClock
) -> None:
    await cache.put("u1", "k", {"kept": True}, AT)
    store.unavailable = True

    clock.advance(TTL + 1)
    assert (await cache.get("u1", "k")) == Variable(key="k", value={"kept": True}, updated_at=AT)
    clock.advance(STALE_WINDOW - 2)  # just inside ttl + stale_window
    assert (await cache.get("u1", "k")) is not None
    assert store.calls["get"] == 2  # each stale read tried the store first

    clock.advance(2)  # past the window
    with pytest.raises(BackendUnavailableError):
        await cache.get("u1", "k")


async def test_a_tombstone_is_served_stale_as_none_while_the_store_is_down(
    cache: ValkeyVariableCache, store: ObservedVariables, clock: ManualClock
) -> None:
    assert await cache.get("u1", "gone") is None
    store.unavailable = True
    clock.advance(TTL + 1)

    assert await cache.get("u1", "gone") is None


async def test_with_nothing_cached_a_store_error_propagates(
    cache: ValkeyVariableCache, store: ObservedVariables
) -> None:
    store.unavailable = True

    with pytest.raises(BackendUnavailableError):
        await cache.get("u1", "never-cached")


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
async def test_a_value_comes_back_from_the_cache_exactly_as_it_was_put(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache, store: ObservedVariables,
    value: Any,
) -> None:  # fmt: skip
    await cache.put("u1", "k", value, AT)

    read = await replica.get("u1", "k")

    assert store.calls["get"] == 0  # from Valkey, not from the store
    assert read is not None
    assert same_json(read.value, value)
    assert read.value == value
    assert read.updated_at == AT


async def test_the_update_time_keeps_its_instant_and_microseconds_through_the_cache(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache
) -> None:
    in_paris = datetime(2026, 6, 1, 14, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))
    await cache.put("u1", "k", 1, in_paris)

    read = await replica.get("u1", "k")

    assert read is not None
    assert read.updated_at == in_paris
    assert read.updated_at.utcoffset() is not None
    assert read.updated_at.microsecond == 999999


@pytest.mark.parametrize("key", ["a/b", "with space", "ünïcødé 🔑", "%2F", "{braces}", "x" * 255])
async def test_any_valid_key_is_cached_under_its_own_entry(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache, store: ObservedVariables,
    key: str,
) -> None:  # fmt: skip
    await cache.put("u1", key, key.upper(), AT)
    await cache.put("u1", key + "-other", "other", AT)

    assert (await replica.get("u1", key)) == Variable(key=key, value=key.upper(), updated_at=AT)
    assert store.calls["get"] == 0


async def test_two_users_whose_ids_and_keys_join_alike_never_share_an_entry(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache
) -> None:
    await cache.put("team", "a/b", "team's secret", AT)
    await cache.put("team/a", "b", "another user's value", AT)

    assert cache.value_key("team", "a/b") != cache.value_key("team/a", "b")
    read = await replica.get("team", "a/b")
    assert read is not None
    assert read.value == "team's secret"


# ---------------------------------------------------------------------- two replicas


async def test_two_replicas_see_each_others_writes_at_once(
    cache: ValkeyVariableCache, replica: ValkeyVariableCache, store: ObservedVariables
) -> None:
    await cache.put("u1", "k", "from a", AT)
    assert (await replica.get("u1", "k")) == Variable(key="k", value="from a", updated_at=AT)
    assert (await cache.get("u1", "k")) is not None  # both hold it now

    await replica.put("u1", "k", "from b", LATER)
    assert (await cache.get("u1", "k")) == Variable(key="k", value="from b", updated_at=LATER)

    assert await cache.delete("u1", "k") is True
    assert await replica.get("u1", "k") is None
    assert store.calls["get"] == 0
