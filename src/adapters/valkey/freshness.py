"""How long a cache entry answers: fresh for `ttl`, then only while the system of record is
unavailable, within `stale_window` more; Valkey keeps it that long and no longer."""

from __future__ import annotations

from collections.abc import Callable


class Freshness:
    def __init__(self, *, ttl: float, stale_window: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._stale_window = stale_window
        self.clock = clock
        self.keep_ms = max(1, round((ttl + stale_window) * 1000))

    def fresh(self, cached_at: float) -> bool:
        return self.clock() - cached_at < self._ttl

    def servable_stale(self, cached_at: float) -> bool:
        return self.clock() - cached_at < self._ttl + self._stale_window
