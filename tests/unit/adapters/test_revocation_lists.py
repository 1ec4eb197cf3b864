"""The revocation list in memory, and every process's copy of the shared one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

import pytest

from adapters.memory.revocations import CachedRevocationList, InMemoryRevocationList
from domain.errors import BackendUnavailableError

NOW = 1_800_000_000.0
DAY = 86_400.0
WAIT = 3.0  # the longest a background refresh may take to land, on a loaded machine


class MovableClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class ScriptedFeed:
    """A feed the test fills: what other processes published, and what this one did."""

    def __init__(self) -> None:
        self.published: list[tuple[str, float]] = []
        self.pending: list[tuple[str, float]] = []
        self.failure: Exception | None = None
        self.reads = 0

    async def publish(self, execution_id: str, until: float) -> None:
        if self.failure is not None:
            raise self.failure
        self.published.append((execution_id, until))

    async def updates(self) -> Iterable[tuple[str, float]]:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        found, self.pending = self.pending, []
        return found


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def feed() -> ScriptedFeed:
    return ScriptedFeed()


@pytest.fixture
async def cached(feed: ScriptedFeed, clock: MovableClock) -> AsyncIterator[CachedRevocationList]:
    revocations = CachedRevocationList(feed, refresh=60.0, clock=clock)
    yield revocations
    await revocations.aclose()


# --- in memory


async def test_a_revoked_execution_is_revoked_and_no_other_is(clock: MovableClock) -> None:
    revocations = InMemoryRevocationList(clock)

    await revocations.revoke("e1", DAY)

    assert await revocations.is_revoked("e1")
    assert not await revocations.is_revoked("e2")


async def test_a_revocation_ends_after_its_ttl(clock: MovableClock) -> None:
    revocations = InMemoryRevocationList(clock)
    await revocations.revoke("e1", 60)

    clock.now = NOW + 59.9
    assert await revocations.is_revoked("e1")
    clock.now = NOW + 60
    assert not await revocations.is_revoked("e1")


async def test_revoking_again_restarts_the_period_and_never_shortens_it(
    clock: MovableClock,
) -> None:
    revocations = InMemoryRevocationList(clock)
    await revocations.revoke("e1", 60)
    clock.now = NOW + 30
    await revocations.revoke("e1", 60)  # now ends at NOW + 90
    await revocations.revoke("e1", 1)  # shorter: no effect

    clock.now = NOW + 89
    assert await revocations.is_revoked("e1")
    clock.now = NOW + 90
    assert not await revocations.is_revoked("e1")


async def test_ended_revocations_are_forgotten_as_new_ones_come(clock: MovableClock) -> None:
    revocations = InMemoryRevocationList(clock, sweep_every=10)
    for number in range(1000):
        await revocations.revoke(f"old-{number}", 1)
    clock.now = NOW + 2

    for number in range(1000):
        await revocations.revoke(f"new-{number}", 60)

    assert len(revocations) <= 1000


# --- the cached copy of a feed


async def test_a_revocation_made_here_applies_at_once_and_is_published(
    cached: CachedRevocationList, feed: ScriptedFeed
) -> None:
    await cached.revoke("e1", DAY)

    assert await cached.is_revoked("e1")
    assert feed.published == [("e1", NOW + DAY)]


async def test_a_revocation_made_here_applies_here_even_when_publishing_fails(
    cached: CachedRevocationList, feed: ScriptedFeed
) -> None:
    feed.failure = BackendUnavailableError("the local store cannot be used")

    with pytest.raises(BackendUnavailableError):
        await cached.revoke("e1", DAY)

    assert await cached.is_revoked("e1")


async def test_revocations_made_elsewhere_apply_once_refreshed(
    cached: CachedRevocationList, feed: ScriptedFeed
) -> None:
    feed.pending = [("e1", NOW + DAY)]
    assert not await cached.is_revoked("e1")

    await cached.refresh()

    assert await cached.is_revoked("e1")
    assert not await cached.is_revoked("e2")


async def test_start_reads_the_feed_before_returning(
    cached: CachedRevocationList, feed: ScriptedFeed
) -> None:
    feed.pending = [("e1", NOW + DAY)]

    await cached.start()

    assert await cached.is_revoked("e1")


async def test_a_feed_that_forgets_does_not_bring_a_revoked_token_back(
    cached: CachedRevocationList, feed: ScriptedFeed, clock: MovableClock
) -> None:
    feed.pending = [("e1", NOW + 60)]
    await cached.refresh()

    await cached.refresh()  # the feed has nothing more to say (Valkey restarted empty)
    assert await cached.is_revoked("e1")

    clock.now = NOW + 60  # only the end of the revocation ends it
    assert not await cached.is_revoked("e1")


async def test_a_revocation_ended_already_is_ignored(
    cached: CachedRevocationList, feed: ScriptedFeed
) -> None:
    feed.pending = [("e1", NOW - 1)]

    await cached.refresh()

    assert not await cached.is_revoked("e1")


async def test_a_started_list_refreshes_by_itself_every_interval(feed: ScriptedFeed) -> None:
    revocations = CachedRevocationList(feed, refresh=0.02)
    await revocations.start()
    try:
        feed.pending = [("e1", time.time() + DAY)]
        deadline = time.monotonic() + WAIT
        while not await revocations.is_revoked("e1") and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

        assert await revocations.is_revoked("e1")
    finally:
        await revocations.aclose()


async def test_a_failing_refresh_is_reported_once_and_retried_until_it_works(
    feed: ScriptedFeed,
) -> None:
    errors: list[BaseException] = []
    revocations = CachedRevocationList(feed, refresh=0.01, on_refresh_error=errors.append)
    feed.failure = BackendUnavailableError("the local store cannot be used")
    await revocations.start()  # a failing first read does not stop the start
    try:
        deadline = time.monotonic() + WAIT
        while feed.reads < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert feed.reads >= 5
        assert len(errors) == 1

        feed.failure = None
        feed.pending = [("e1", time.time() + DAY)]
        while not await revocations.is_revoked("e1") and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert await revocations.is_revoked("e1")
    finally:
        await revocations.aclose()


async def test_closing_stops_the_refreshes(feed: ScriptedFeed) -> None:
    revocations = CachedRevocationList(feed, refresh=0.01)
    await revocations.start()
    await revocations.aclose()
    reads = feed.reads

    await asyncio.sleep(0.05)

    assert feed.reads == reads


def test_a_refresh_interval_of_zero_is_refused(feed: ScriptedFeed) -> None:
    with pytest.raises(ValueError, match="refresh"):
        CachedRevocationList(feed, refresh=0)
