"""`rate_limited` (SPEC section 9): recorded at most once per execution per minute, with `count`
the requests refused in that minute, by whichever process counted the minute's first refusal.
The clock is the test's: 19:04:05.123 at the start, so the minute ends 54.877 s later."""

from __future__ import annotations

import pytest

from adapters.memory.audit import InMemoryAuditLog
from adapters.memory.refusal_tally import InMemoryRefusalTally
from application.audit import AuditRecorder
from application.ports import AuditLog, RefusalTally
from application.record_rate_limited import RecordRateLimited, minute_of
from domain.audit import AuditAction, AuditEvent
from domain.errors import AuditUnavailableError
from domain.model import RequestContext

GRACE = 2.0
UNTIL_THE_MINUTE_ENDS = 54.877
KEY = b"rate-limited-test-key"


class BrokenAuditLog(AuditLog):
    """An audit log that fails until it is mended, then keeps what it is given."""

    def __init__(self) -> None:
        self.broken = True
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> None:
        if self.broken:
            raise AuditUnavailableError()
        self.events.append(event)

    async def record_or_refuse(self, event: AuditEvent) -> None:
        await self.record(event)


class ForgetfulTally(InMemoryRefusalTally):
    """A shared tally that lost its counts (a Valkey restarted without persistence)."""

    async def count(self, execution_id: str, minute: int) -> int:
        return 0


@pytest.fixture
def tally() -> InMemoryRefusalTally:
    return InMemoryRefusalTally()


def reporter_on(tally: RefusalTally, log: AuditLog, clock) -> RecordRateLimited:
    audit = AuditRecorder(log=log, clock=clock, key=KEY)
    return RecordRateLimited(tally=tally, audit=audit, clock=clock, grace=GRACE)


@pytest.fixture
def reporter(tally, audit_log, clock) -> RecordRateLimited:
    return reporter_on(tally, audit_log, clock)


async def refuse(reporter: RecordRateLimited, context, times: int) -> None:
    for _ in range(times):
        await reporter.refused(context)


async def test_nothing_is_recorded_while_the_minute_lasts(reporter, audit_log, clock, alice):
    await refuse(reporter, alice, 5)

    clock.advance(UNTIL_THE_MINUTE_ENDS + GRACE - 0.01)
    await reporter.record_due()

    assert audit_log.events == []
    assert reporter.pending == 1


async def test_once_the_minute_is_over_one_event_counts_every_refusal_in_it(
    reporter, audit_log, clock, alice
):
    await refuse(reporter, alice, 5)

    clock.advance(UNTIL_THE_MINUTE_ENDS + GRACE)
    await reporter.record_due()
    await reporter.record_due()

    [event] = audit_log.events
    assert event.action == AuditAction.RATE_LIMITED
    assert event.execution_id == "exec-alice-1"
    assert event.details.count == 5
    assert event.details.outcome == "RATE_LIMITED"
    assert reporter.pending == 0


async def test_the_event_carries_the_details_of_the_minutes_first_refused_request(
    reporter, audit_log, clock, alice
):
    await reporter.refused(alice)
    await reporter.refused(
        RequestContext(principal=alice.principal, request_id="req-later", client_address="10.9.9.9")
    )

    clock.advance(UNTIL_THE_MINUTE_ENDS + GRACE)
    await reporter.record_due()

    [event] = audit_log.events
    details = event.details
    assert (details.request_id, details.client_address) == ("req-a1", "10.1.2.3")
    assert (details.user_id, details.event_id, details.job_id) == ("alice", "event-7", "job-11")
    assert (details.key, details.value_hmac, details.intent_id) == (None, None, None)
    assert details.count == 2


async def test_each_minute_with_refusals_has_its_own_event(reporter, audit_log, clock, alice):
    await refuse(reporter, alice, 3)
    clock.advance(UNTIL_THE_MINUTE_ENDS + 1)  # 19:05:01, the next minute
    await refuse(reporter, alice, 2)

    clock.advance(60)  # 19:06:01: the second minute is over, but not its grace
    await reporter.record_due()
    assert [event.details.count for event in audit_log.events] == [3]

    clock.advance(GRACE)
    await reporter.record_due()
    assert [event.details.count for event in audit_log.events] == [3, 2]


async def test_each_execution_has_its_own_event(reporter, audit_log, clock, alice, bob):
    await refuse(reporter, alice, 4)
    await refuse(reporter, bob, 1)

    clock.advance(UNTIL_THE_MINUTE_ENDS + GRACE)
    await reporter.record_due()

    counts = {event.execution_id: event.details.count for event in audit_log.events}
    assert counts == {"exec-alice-1": 4, "exec-bob-1": 1}
    assert {event.details.user_id for event in audit_log.events} == {"alice", "bob"}


async def test_processes_sharing_a_tally_record_the_minute_once_with_every_refusal(
    tally, clock, alice
):
    first_log, second_log = InMemoryAuditLog(), InMemoryAuditLog()
    first, second = reporter_on(tally, first_log, clock), reporter_on(tally, second_log, clock)

    await refuse(second, alice, 2)
    await refuse(first, alice, 3)
    await refuse(second, alice, 1)

    clock.advance(UNTIL_THE_MINUTE_ENDS + GRACE)
    await first.record_due()
    await second.record_due()

    # The second counted the minute's first refusal: it alone records the minute.
    assert first_log.events == []
    [event] = second_log.events
    assert event.details.count == 6


async def test_at_shutdown_what_this_process_owns_is_recorded_at_once_with_the_count_so_far(
    reporter, audit_log, clock, alice
):
    await refuse(reporter, alice, 3)

    await reporter.record_all()

    [event] = audit_log.events
    assert event.details.count == 3
    assert reporter.pending == 0
    clock.advance(UNTIL_THE_MINUTE_ENDS + GRACE)
    await reporter.record_due()
    assert len(audit_log.events) == 1


async def test_a_minute_the_audit_log_could_not_take_is_recorded_when_it_can(tally, clock, alice):
    log = BrokenAuditLog()
    reporter = reporter_on(tally, log, clock)
    await refuse(reporter, alice, 2)
    clock.advance(UNTIL_THE_MINUTE_ENDS + GRACE)

    with pytest.raises(AuditUnavailableError):
        await reporter.record_due()
    assert reporter.pending == 1

    log.broken = False
    await reporter.record_due()

    [event] = log.events
    assert event.details.count == 2


async def test_a_tally_that_lost_its_count_still_reports_the_refusals_this_process_saw(
    audit_log, clock, alice
):
    reporter = reporter_on(ForgetfulTally(), audit_log, clock)
    await refuse(reporter, alice, 4)

    clock.advance(UNTIL_THE_MINUTE_ENDS + GRACE)
    await reporter.record_due()

    [event] = audit_log.events
    assert event.details.count == 4


def test_a_minute_is_named_by_whole_minutes_since_the_epoch(clock):
    assert minute_of(clock.now()) == int(clock.now().timestamp()) // 60
    assert minute_of(clock.now().replace(second=59, microsecond=999999)) == minute_of(clock.now())
    assert minute_of(clock.now().replace(minute=5, second=0, microsecond=0)) == (
        minute_of(clock.now()) + 1
    )
