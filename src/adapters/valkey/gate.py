"""Whether Valkey is worth asking right now, shared by every Valkey adapter of a process."""

from __future__ import annotations

import time
from collections.abc import Callable

from valkey.exceptions import ValkeyError

# What "Valkey did not answer" looks like from valkey-py: its own errors (connection,
# timeout, busy, cluster down), asyncio's and the OS's timeouts and resets.
UNAVAILABLE = (ValkeyError, TimeoutError, OSError)


class ValkeyGate:
    """Tracks failures so that an unreachable Valkey costs one `commandTimeout`, not one per
    request: after a failure the adapters go straight to their fallback for a short,
    growing pause, then try Valkey again. No restart is needed when it comes back.
    """

    def __init__(
        self,
        *,
        on_fallback: Callable[[str], None] = lambda operation: None,
        first_pause: float = 0.25,
        longest_pause: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_fallback = on_fallback
        self._first_pause = first_pause
        self._longest_pause = longest_pause
        self._clock = clock
        self._pause = 0.0
        self._closed_until = 0.0
        self.last_error: str | None = None

    @property
    def open(self) -> bool:
        """True when Valkey may be asked (it answered last time, or the pause is over)."""
        return self._clock() >= self._closed_until

    def succeeded(self) -> None:
        self._pause = 0.0
        self._closed_until = 0.0
        self.last_error = None

    def failed(self, operation: str, error: BaseException) -> None:
        """A call failed and its operation fell back to the store or the local limiter."""
        self.mark_down(error)
        self.fell_back(operation)

    def mark_down(self, error: BaseException) -> None:
        self._pause = min(self._longest_pause, max(self._first_pause, self._pause * 2))
        self._closed_until = self._clock() + self._pause
        self.last_error = f"{type(error).__name__}: {error}"

    def fell_back(self, operation: str) -> None:
        self._on_fallback(operation)
