from __future__ import annotations

from application.ports import RefusalTally

# Minutes kept behind the newest one counted: the reporter reads a minute's count a little
# after it ends (longer while the audit log is failing); older counts are forgotten.
KEPT_MINUTES = 10


class InMemoryRefusalTally(RefusalTally):
    """The tally of one process: without Valkey, that process is the whole service."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._newest_minute = 0

    async def add(self, execution_id: str, minute: int) -> int:
        if minute > self._newest_minute:
            self._newest_minute = minute
            oldest = minute - KEPT_MINUTES
            for stale in [k for k in self._counts if k[1] < oldest]:
                del self._counts[stale]
        count = self._counts.get((execution_id, minute), 0) + 1
        self._counts[(execution_id, minute)] = count
        return count

    async def count(self, execution_id: str, minute: int) -> int:
        return self._counts.get((execution_id, minute), 0)
