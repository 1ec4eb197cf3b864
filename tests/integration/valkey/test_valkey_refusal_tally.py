"""`ValkeyRefusalTally` against a real valkey-server: two processes' limiters, each with its own
client and reporter, record `rate_limited` once per execution per minute for the fleet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from adapter_kit import Kit
from valkey_servers import HOST, free_port

from adapters.memory.audit import InMemoryAuditLog
from adapters.valkey.refusal_tally import KEEP_SECONDS, ValkeyRefusalTally
from application.audit import AuditRecorder
from application.record_rate_limited import RecordRateLimited, minute_of
from domain.audit import AuditAction, AuditEvent
from domain.model import Principal, RequestContext

START = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)
GRACE = 2.0


class SharedClock:
    """The wall clock the replicas agree on, moved by the test."""

    def __init__(self) -> None:
        self.moment = START

    def now(self) -> datetime:
        return self.moment


class Replica:
    """One process: its own Valkey client, tally, audit log and reporter."""

    def __init__(self, kit: Kit, clock: SharedClock, url: str | None = None) -> None:
        self.tally = ValkeyRefusalTally(
            client=kit.open_client(url or kit.url), gate=kit.make_gate()
        )
        self.log = InMemoryAuditLog()
        audit = AuditRecorder(log=self.log, clock=clock, key=b"k")
        self.reporter = RecordRateLimited(tally=self.tally, audit=audit, clock=clock, grace=GRACE)

    @property
    def events(self) -> list[AuditEvent]:
        return [e for e in self.log.events if e.action == AuditAction.RATE_LIMITED]


def request(execution_id: str, n: int) -> RequestContext:
    return RequestContext(
        principal=Principal(execution_id=execution_id, user_id="user-1"),
        request_id=f"req-{n}",
        client_address="10.0.0.1",
    )


def end_minute(clock: SharedClock) -> None:
    clock.moment = clock.moment.replace(second=0, microsecond=0) + timedelta(minutes=1, seconds=3)


async def test_two_replicas_record_one_event_counting_both_replicas_refusals(kit: Kit) -> None:
    clock = SharedClock()
    first, second = Replica(kit, clock), Replica(kit, clock)

    await first.reporter.refused(request("exec-1", 1))
    for n in range(2, 6):
        await second.reporter.refused(request("exec-1", n))
    await first.reporter.refused(request("exec-1", 6))

    end_minute(clock)
    await first.reporter.record_due()
    await second.reporter.record_due()

    [event] = first.events
    assert second.events == []
    assert event.details.count == 6
    assert event.details.request_id == "req-1"
    assert kit.fallbacks == []


async def test_concurrent_refusals_on_two_replicas_name_exactly_one_owner(kit: Kit) -> None:
    clock = SharedClock()
    replicas = [Replica(kit, clock), Replica(kit, clock)]

    await asyncio.gather(
        *(replicas[n % 2].reporter.refused(request("exec-burst", n)) for n in range(40))
    )

    assert sorted(replica.reporter.pending for replica in replicas) == [0, 1]
    end_minute(clock)
    for replica in replicas:
        await replica.reporter.record_due()
    [event] = [event for replica in replicas for event in replica.events]
    assert event.details.count == 40


async def test_each_minute_has_its_own_owner_and_event(kit: Kit) -> None:
    clock = SharedClock()
    first, second = Replica(kit, clock), Replica(kit, clock)

    await first.reporter.refused(request("exec-1", 1))
    await second.reporter.refused(request("exec-1", 2))
    end_minute(clock)  # 19:05:03, the next minute
    await second.reporter.refused(request("exec-1", 3))
    await first.reporter.refused(request("exec-1", 4))
    await first.reporter.refused(request("exec-1", 5))

    await first.reporter.record_due()
    await second.reporter.record_due()
    assert [(e.details.request_id, e.details.count) for e in first.events] == [("req-1", 2)]
    assert second.events == []

    end_minute(clock)
    await first.reporter.record_due()
    await second.reporter.record_due()
    assert [(e.details.request_id, e.details.count) for e in second.events] == [("req-3", 3)]


async def test_a_minutes_count_expires_on_its_own(kit: Kit) -> None:
    tally = ValkeyRefusalTally(client=kit.open_client(kit.url), gate=kit.make_gate())
    minute = minute_of(START)

    assert await tally.add("exec-ttl", minute) == 1
    assert await tally.add("exec-ttl", minute) == 2

    [key] = [key async for key in kit.raw.scan_iter(match="cronium:refused:*")]
    assert key.decode() == f"cronium:refused:{{exec-ttl}}:{minute}"
    assert 0 < await kit.raw.ttl(key) <= KEEP_SECONDS
    assert await tally.count("exec-ttl", minute) == 2
    assert await tally.count("exec-ttl", minute + 1) == 0


async def test_without_valkey_a_replica_counts_alone_and_still_records_its_minute(
    kit: Kit,
) -> None:
    clock = SharedClock()
    nowhere = f"valkey://{HOST}:{free_port()}"
    alone = Replica(kit, clock, url=nowhere)

    for n in range(3):
        await alone.reporter.refused(request("exec-1", n))
    end_minute(clock)
    await alone.reporter.record_due()

    [event] = alone.events
    assert event.details.count == 3
    assert "refusal_tally" in kit.fallbacks
