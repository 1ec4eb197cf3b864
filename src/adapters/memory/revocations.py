"""Revocations held in this process: for tests, and the copy each process checks per request."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from application.ports import RevocationList


class InMemoryRevocationList(RevocationList):
    """Execution id -> the moment its revocation ends (seconds since the epoch, by `clock`).

    An ended revocation is the same as none. A sweep forgets them, bounding memory, once the
    additions since the last one reach `sweep_every` or the number of entries it left,
    whichever is more: its cost spread over the additions stays constant, and the entries
    stay within twice the revocations in force (plus `sweep_every`). Nothing here awaits,
    so a check is a dictionary lookup.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, sweep_every: int = 1024) -> None:
        if sweep_every < 1:
            raise ValueError("sweep_every must be at least 1")
        self._clock = clock
        self._until: dict[str, float] = {}
        self._sweep_every = sweep_every
        self._adds_until_sweep = sweep_every

    async def revoke(self, execution_id: str, ttl: float) -> None:
        self.add(execution_id, self._clock() + ttl)

    async def is_revoked(self, execution_id: str) -> bool:
        return self.holds(execution_id)

    def add(self, execution_id: str, until: float) -> None:
        """Revoked until `until`, or longer if it already was."""
        if until > self._until.get(execution_id, 0.0):
            self._until[execution_id] = until
        self._adds_until_sweep -= 1
        if self._adds_until_sweep <= 0:
            self.sweep()

    def holds(self, execution_id: str) -> bool:
        until = self._until.get(execution_id)
        return until is not None and until > self._clock()

    def sweep(self) -> None:
        now = self._clock()
        for execution_id in [e for e, until in self._until.items() if until <= now]:
            del self._until[execution_id]
        self._adds_until_sweep = max(self._sweep_every, len(self._until))

    def __len__(self) -> int:
        return len(self._until)


class RevocationFeed(Protocol):
    """Where the processes of a deployment share revocations: the local store, or Valkey."""

    async def publish(self, execution_id: str, until: float) -> None:
        """Tell every process: the execution is revoked until `until` (seconds since the
        epoch)."""
        ...

    async def updates(self) -> Iterable[tuple[str, float]]:
        """Revocations published since the previous call (all of them at the first), by any
        process; some may come again."""
        ...


class CachedRevocationList(RevocationList):
    """This process's copy of the shared revocations, so that checking a request costs a
    dictionary lookup rather than a round trip.

    - A revocation made here applies here at once, then is published through `feed`.
    - Those made elsewhere arrive within `refresh` seconds: `start` reads the feed once
      (before the process serves), then a task asks it for updates every `refresh`.
    - Entries are only added, and forgotten once they end: a feed that fails or forgets
      (Valkey restarted empty) cannot bring a revoked token back on this process.
    - A refresh that fails is tried again next time; the first failure after a success is
      reported to `on_refresh_error` (not every one: a broken store would fill the log).
    """

    def __init__(
        self,
        feed: RevocationFeed,
        *,
        refresh: float,
        clock: Callable[[], float] = time.time,
        on_refresh_error: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        if refresh <= 0:
            raise ValueError("refresh must be a positive number of seconds")
        self._feed = feed
        self._refresh = refresh
        self._clock = clock
        self._on_refresh_error = on_refresh_error
        self._known = InMemoryRevocationList(clock)
        self._refresher: asyncio.Task[None] | None = None
        self._failing = False

    async def revoke(self, execution_id: str, ttl: float) -> None:
        until = self._clock() + ttl
        self._known.add(execution_id, until)
        await self._feed.publish(execution_id, until)

    async def is_revoked(self, execution_id: str) -> bool:
        return self._known.holds(execution_id)

    async def refresh(self) -> None:
        """Take in what the feed has seen since the last refresh."""
        for execution_id, until in await self._feed.updates():
            self._known.add(execution_id, until)

    async def start(self) -> None:
        if self._refresher is not None:
            return
        await self._refresh_reporting_errors()
        self._refresher = asyncio.get_running_loop().create_task(self._keep_refreshing())

    async def aclose(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher

    async def _keep_refreshing(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            await self._refresh_reporting_errors()

    async def _refresh_reporting_errors(self) -> None:
        try:
            await self.refresh()
        except Exception as error:  # the next refresh tries again; serving goes on
            if not self._failing:
                self._on_refresh_error(error)
            self._failing = True
        else:
            self._failing = False
