from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from application.audit import AuditRecorder
from application.ports import Clock, RefusalTally
from domain.model import RequestContext

MINUTE = 60


@dataclass
class _OwnedMinute:
    first: RequestContext  # the minute's first refused request, whose details the event carries
    seen: int  # refusals this process counted in the minute


def minute_of(moment: datetime) -> int:
    """Whole minutes since the epoch: the calendar minute every replica names alike."""
    return int(moment.timestamp() // MINUTE)


class RecordRateLimited:
    """Records `rate_limited` (SPEC section 9) at most once per execution per minute, with
    `count` the number of its requests the rate limit refused in that minute.

    - Every refusal is counted in the tally, which with Valkey every replica shares.
    - The process that counted a minute's first refusal owns that minute's event. It records
      it once the minute is over and `grace` seconds more have passed (the other replicas'
      last refusals of the minute reach the tally), with the tally's count.
    - `record_all` (shutdown) records what this process owns at once, with the count so far.
    - A process that dies owning a minute loses that minute's event: the loss window is the
      minute plus `grace`. While the shared tally is unreachable each process counts alone,
      so each may record the minute once.
    """

    def __init__(
        self, *, tally: RefusalTally, audit: AuditRecorder, clock: Clock, grace: float = 2.0
    ) -> None:
        self._tally = tally
        self._audit = audit
        self._clock = clock
        self._grace = grace
        self._owned: dict[tuple[str, int], _OwnedMinute] = {}

    @property
    def pending(self) -> int:
        """Minutes this process owns and has not recorded yet."""
        return len(self._owned)

    async def refused(self, context: RequestContext) -> None:
        """Count a request the rate limit refused."""
        execution_id = context.principal.execution_id
        minute = minute_of(self._clock.now())
        count = await self._tally.add(execution_id, minute)
        owned = self._owned.get((execution_id, minute))
        if owned is not None:
            owned.seen += 1
        elif count == 1:
            self._owned[(execution_id, minute)] = _OwnedMinute(first=context, seen=1)

    async def record_due(self) -> None:
        """Record every owned minute that is over (with its grace)."""
        now = self._clock.now().timestamp()
        for execution_id, minute in list(self._owned):
            if now >= (minute + 1) * MINUTE + self._grace:
                await self._record(execution_id, minute)

    async def record_all(self) -> None:
        """Record every owned minute now, over or not (the process is stopping)."""
        for execution_id, minute in list(self._owned):
            await self._record(execution_id, minute)

    async def _record(self, execution_id: str, minute: int) -> None:
        owned = self._owned[(execution_id, minute)]
        # At least what this process saw: a tally that lost its count (Valkey restarted
        # without persistence) must not make the event say fewer than were refused here.
        count = max(owned.seen, await self._tally.count(execution_id, minute))
        await self._audit.rate_limited(owned.first, count)
        del self._owned[(execution_id, minute)]
