"""The audit shipper, driven with the in-memory outbox, spool and dead letters, fake sinks
and a fake clock whose sleeps only move it forward: no test here waits for real time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from adapters.memory.audit_outbox import (
    InMemoryAuditDeadLetters,
    InMemoryAuditOutbox,
    InMemoryAuditSpool,
    OutboxEntries,
)
from application.audit_shipping import AuditShipper
from application.ports import (
    AuditOutboxUnavailableError,
    AuditShippingObserver,
    AuditSink,
    AuditSinkRejectedError,
    AuditSinkUnavailableError,
    OutboxBacklog,
    OutboxEntry,
    WireAuditSink,
)
from domain.audit import AuditAction, AuditDetails, AuditEvent, encode_event

AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)
CLAIM_IDLE = 60.0
POLL = 1.0
RETRY_MAX = 5.0


def event(n: int) -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id="exec-1",
        action=AuditAction.SET_VARIABLE,
        timestamp=AT + timedelta(milliseconds=n),
        details=AuditDetails(outcome="ok", key=f"key-{n}", value_hmac="hmac-sha256:00"),
    )


class FakeTime:
    """A monotonic clock that only sleeps move forward."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeSink(AuditSink):
    """A sink that takes every event, or is `down`, or `refuses` the ids it is told."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: list[str] = []
        self.down = False
        self.refuses: set[str] = set()
        self.explodes = False
        self.attempts = 0
        self.closed = False

    async def deliver(self, event: AuditEvent) -> None:
        self.attempts += 1
        await asyncio.sleep(0)  # as a real sink would, letting the other deliveries start
        if self.explodes:
            raise RuntimeError("a bug in the sink")
        if self.down:
            raise AuditSinkUnavailableError(f"{self.name} is down")
        if event.id in self.refuses:
            raise AuditSinkRejectedError("400: the event is malformed")
        self.received.append(event.id)

    async def close(self) -> None:
        self.closed = True


class GatedSink(FakeSink):
    """A sink whose deliveries wait for `gate`, counting how many are in flight at once."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    async def deliver(self, event: AuditEvent) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        await super().deliver(event)


@dataclass
class RecordingObserver(AuditShippingObserver):
    delivered_to: list[str] = field(default_factory=list)
    retries: list[tuple[str, float, bool]] = field(default_factory=list)
    recoveries: list[str] = field(default_factory=list)
    rejections: list[tuple[str, str, str]] = field(default_factory=list)
    replays: list[int] = field(default_factory=list)
    backlogs: list[OutboxBacklog] = field(default_factory=list)
    troubles: list[str] = field(default_factory=list)

    def delivered(self, sink: str) -> None:
        self.delivered_to.append(sink)

    def retrying(self, sink: str, error: str, delay: float, *, first: bool) -> None:
        self.retries.append((sink, delay, first))

    def recovered(self, sink: str) -> None:
        self.recoveries.append(sink)

    def rejected(self, sink: str, event_id: str, reason: str) -> None:
        self.rejections.append((sink, event_id, reason))

    def replayed(self, count: int) -> None:
        self.replays.append(count)

    def backlog(self, backlog: OutboxBacklog) -> None:
        self.backlogs.append(backlog)

    def trouble(self, what: str, error: BaseException) -> None:
        self.troubles.append(what)


@dataclass
class World:
    time: FakeTime
    entries: OutboxEntries
    outbox: InMemoryAuditOutbox
    spool: InMemoryAuditSpool
    dead_letters: InMemoryAuditDeadLetters
    observer: RecordingObserver
    backend: FakeSink
    store: FakeSink
    make: Callable[..., AuditShipper]

    async def record(self, *numbers: int) -> list[AuditEvent]:
        events = [event(n) for n in numbers]
        for item in events:
            await self.outbox.append(item)
        return events

    def consumer(self, name: str) -> InMemoryAuditOutbox:
        """Another process's view of the same outbox."""
        return InMemoryAuditOutbox(
            consumer=name,
            claim_idle=CLAIM_IDLE,
            entries=self.entries,
            monotonic=self.time.monotonic,
        )


@pytest.fixture
def world() -> World:
    fake_time = FakeTime()
    entries = OutboxEntries()
    outbox = InMemoryAuditOutbox(
        consumer="this-process",
        claim_idle=CLAIM_IDLE,
        entries=entries,
        monotonic=fake_time.monotonic,
    )
    spool = InMemoryAuditSpool()
    dead_letters = InMemoryAuditDeadLetters()
    observer = RecordingObserver()
    backend, store = FakeSink("backend"), FakeSink("store")

    def make(**overrides: Any) -> AuditShipper:
        options: dict[str, Any] = {
            "outbox": outbox,
            "sinks": [backend, store],
            "spool": spool,
            "dead_letters": dead_letters,
            "observer": observer,
            "concurrency": 4,
            "retry_max": RETRY_MAX,
            "poll_interval": POLL,
            "trim_interval": 60.0,
            "monotonic": fake_time.monotonic,
            "sleep": fake_time.sleep,
            "jitter": lambda: 1.0,  # the whole delay: the test reads exact numbers
        }
        options.update(overrides)
        return AuditShipper(**options)

    return World(fake_time, entries, outbox, spool, dead_letters, observer, backend, store, make)


def ids(events: list[AuditEvent]) -> list[str]:
    return [item.id for item in events]


async def test_every_recorded_event_reaches_every_sink_and_leaves_the_outbox(world: World) -> None:
    recorded = await world.record(1, 2, 3)

    left = await world.make().flush(10.0)

    assert left == 0
    assert world.backend.received == ids(recorded)
    assert world.store.received == ids(recorded)
    assert world.entries.pending == {}
    assert world.observer.delivered_to.count("backend") == 3


async def test_no_more_deliveries_run_at_once_than_the_concurrency_allows(world: World) -> None:
    gated = GatedSink("backend")
    await world.record(*range(10))
    shipper = world.make(sinks=[gated], concurrency=2)

    flushing = asyncio.create_task(shipper.flush(10.0))
    for _ in range(20):
        await asyncio.sleep(0)
    gated.gate.set()
    assert await flushing == 0

    assert gated.most_in_flight == 2
    assert len(gated.received) == 10


async def test_an_event_is_acknowledged_only_once_every_sink_holds_it(world: World) -> None:
    world.backend.down = True
    (recorded,) = await world.record(1)

    left = await world.make().flush(0.5)

    assert left == 1
    assert world.store.received == [recorded.id]
    assert world.entries.events() == [recorded]


async def test_a_sink_that_comes_back_gets_the_event_and_the_others_are_not_sent_it_again(
    world: World,
) -> None:
    world.backend.down = True
    (recorded,) = await world.record(1)
    shipper = world.make()
    await shipper.flush(0.5)

    world.backend.down = False
    left = await shipper.flush(10.0, patient=True)

    assert left == 0
    assert world.backend.received == [recorded.id]
    assert world.store.received == [recorded.id]
    assert world.entries.pending == {}
    assert world.observer.recoveries == ["backend"]


async def test_an_unavailable_sink_is_retried_with_a_doubling_pause_capped_at_the_maximum(
    world: World,
) -> None:
    world.backend.down = True
    await world.record(1)
    shipper = world.make(sinks=[world.backend])

    await shipper.flush(30.0, patient=True)

    delays = [delay for sink, delay, _ in world.observer.retries]
    assert delays[:5] == [1.0, 2.0, 4.0, RETRY_MAX, RETRY_MAX]
    # It slept out each pause rather than calling the sink in a loop.
    assert world.backend.attempts == len(delays)
    assert [first for _, _, first in world.observer.retries][:2] == [True, False]


async def test_jitter_shortens_a_pause_by_at_most_half(world: World) -> None:
    world.backend.down = True
    await world.record(1)

    await world.make(sinks=[world.backend], jitter=lambda: 0.0).flush(0.1)

    assert [delay for _, delay, _ in world.observer.retries] == [0.5]


async def test_deliveries_in_flight_when_a_sink_fails_do_not_lengthen_its_pause(
    world: World,
) -> None:
    world.backend.down = True
    await world.record(*range(8))

    await world.make(sinks=[world.backend], concurrency=4).flush(0.1)

    # Four were in flight together and all failed: one pause of the first length, and the
    # other entries were not sent to a sink known to be down.
    assert world.backend.attempts == 4
    assert {delay for _, delay, _ in world.observer.retries} == {1.0}


async def test_a_refused_event_becomes_a_dead_letter_without_holding_up_the_others(
    world: World,
) -> None:
    recorded = await world.record(1, 2, 3)
    world.backend.refuses = {recorded[1].id}

    left = await world.make().flush(10.0)

    assert left == 0
    assert world.entries.pending == {}
    assert world.backend.received == [recorded[0].id, recorded[2].id]
    assert world.store.received == ids(recorded)
    (letter,) = world.dead_letters.letters
    assert (letter.event, letter.sink) == (recorded[1], "backend")
    assert world.observer.rejections == [("backend", recorded[1].id, "400: the event is malformed")]


async def test_a_refused_event_that_cannot_be_kept_stays_in_the_outbox(world: World) -> None:
    (recorded,) = await world.record(1)
    world.backend.refuses = {recorded.id}
    world.dead_letters.refuses = True
    shipper = world.make()

    assert await shipper.flush(0.5) == 1
    assert world.entries.events() == [recorded]

    world.dead_letters.refuses = False
    assert await shipper.flush(10.0, patient=True) == 0
    assert [letter.event for letter in world.dead_letters.letters] == [recorded]
    assert world.store.received == [recorded.id]


async def test_a_sink_that_raises_something_unexpected_is_retried_like_an_outage(
    world: World,
) -> None:
    world.backend.explodes = True
    (recorded,) = await world.record(1)
    shipper = world.make()

    assert await shipper.flush(0.5) == 1
    assert world.observer.retries[0][0] == "backend"

    world.backend.explodes = False
    assert await shipper.flush(10.0, patient=True) == 0
    assert world.backend.received == [recorded.id]


async def test_an_acknowledgement_that_fails_is_made_later_without_delivering_again(
    world: World,
) -> None:
    (recorded,) = await world.record(1)
    shipper = world.make()
    real_ack = world.outbox.ack
    refused: list[list[str]] = []

    async def failing_ack(entry_ids: Any) -> None:
        if not refused:
            refused.append(list(entry_ids))
            world.outbox.refuses = True
            try:
                await real_ack(entry_ids)
            finally:
                world.outbox.refuses = False
        await real_ack(entry_ids)

    world.outbox.ack = failing_ack  # type: ignore[method-assign]
    left = await shipper.flush(10.0)

    assert left == 0
    assert refused
    assert world.entries.pending == {}
    assert world.backend.received == [recorded.id]
    assert world.store.received == [recorded.id]


async def test_spooled_events_move_to_the_outbox_once_it_can_be_written_and_are_shipped(
    world: World,
) -> None:
    spooled = [event(n) for n in (1, 2)]
    world.spool.events.extend(spooled)
    world.outbox.refuses = True
    shipper = world.make()

    await shipper.flush(0.5)
    assert world.spool.events == spooled

    world.outbox.refuses = False
    left = await shipper.flush(10.0)

    assert left == 0
    assert world.spool.events == []
    assert world.backend.received == ids(spooled)
    assert world.observer.replays == [2]


async def test_entries_left_by_a_stopped_process_are_claimed_after_the_idle_time(
    world: World,
) -> None:
    (recorded,) = await world.record(1)
    stopped = world.consumer("a-process-that-died")
    assert len(await stopped.claim(10)) == 1
    shipper = world.make()

    assert await shipper.flush(0.5) == 0
    assert world.backend.received == []

    world.time.now += CLAIM_IDLE
    assert await shipper.flush(10.0) == 0
    assert world.backend.received == [recorded.id]
    assert world.entries.pending == {}


async def test_a_living_process_keeps_its_claims_while_a_sink_is_down(world: World) -> None:
    world.backend.down = True
    await world.record(1, 2)
    shipper = world.make()
    other = world.consumer("another-process")
    running = asyncio.create_task(shipper.run())
    try:
        while world.backend.attempts == 0:
            await asyncio.sleep(0)
        # Five idle times pass while this process polls: its claims are renewed each time.
        start = world.time.now
        while world.time.now - start < 5 * CLAIM_IDLE:
            await asyncio.sleep(0)
            assert await other.claim(10) == []
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_the_running_shipper_delivers_an_event_as_soon_as_it_is_woken(
    world: World,
) -> None:
    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    shipper = world.make(sleep=never)  # only `wake` can end its wait between rounds
    running = asyncio.create_task(shipper.run())
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        (recorded,) = await world.record(1)
        shipper.wake()
        for _ in range(50):
            if world.store.received:
                break
            await asyncio.sleep(0)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    assert world.store.received == [recorded.id]


async def test_what_a_cancelled_run_held_is_finished_by_the_flush(world: World) -> None:
    gated = GatedSink("backend")
    (recorded,) = await world.record(1)
    shipper = world.make(sinks=[gated, world.store])
    running = asyncio.create_task(shipper.run())
    while gated.in_flight == 0:
        await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert shipper.holding == 1

    gated.gate.set()
    assert await shipper.flush(10.0) == 0
    assert gated.received == [recorded.id]
    assert world.store.received == [recorded.id]


async def test_a_flush_does_not_wait_for_a_failing_sink(world: World) -> None:
    world.backend.down = True
    recorded = await world.record(1, 2)

    left = await world.make().flush(60.0)

    assert left == 2
    assert world.backend.attempts == 2  # once each, in one round
    assert world.time.slept == []
    assert world.store.received == ids(recorded)


async def test_a_patient_flush_stops_when_the_sink_it_waits_for_is_paused_past_the_deadline(
    world: World,
) -> None:
    world.backend.down = True
    await world.record(1)
    shipper = world.make(sinks=[world.backend])

    left = await shipper.flush(2.5, patient=True)

    assert left == 1
    # Tried at once, then after the 1 s pause; the next pause (2 s) would end past the deadline.
    assert world.backend.attempts == 2
    assert sum(world.time.slept) < 2.5


async def test_a_flush_with_the_outbox_down_returns_at_once(world: World) -> None:
    await world.record(1)
    world.outbox.refuses = True

    assert await world.make().flush(10.0) == 0
    assert world.time.slept == []
    assert world.observer.troubles == ["the audit outbox cannot be read"]


async def test_a_flush_delivers_more_than_one_window(world: World) -> None:
    recorded = await world.record(*range(40))

    assert await world.make(concurrency=1).flush(10.0) == 0

    assert world.store.received == ids(recorded)


async def test_the_backlog_is_reported(world: World) -> None:
    world.backend.down = True
    await world.record(1, 2)

    await world.make().flush(0.5)

    assert world.observer.backlogs[0].pending == 2


async def test_a_shipper_without_sinks_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="at least one sink"):
        world.make(sinks=[])


class SwallowingOutbox(InMemoryAuditOutbox):
    """An outbox whose client swallows a cancellation landing mid-command (valkey-py can)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.entered = asyncio.Event()

    async def claim(self, count: int) -> list[Any]:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise AuditOutboxUnavailableError("connection closed") from None
        raise AssertionError("unreachable")


async def test_stop_ends_the_run_even_when_the_outbox_swallowed_its_cancellation(
    world: World,
) -> None:
    outbox = SwallowingOutbox(monotonic=world.time.monotonic)
    shipper = world.make(outbox=outbox)
    running = asyncio.create_task(shipper.run())
    await outbox.entered.wait()

    shipper.stop()
    running.cancel()
    await asyncio.wait({running}, timeout=5.0)

    assert running.done()


class WireSink(FakeSink, WireAuditSink):
    """A sink that takes the wire form: it keeps the bytes it was handed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.wires: list[bytes] = []

    async def deliver_wire(self, event: AuditEvent, wire: bytes) -> None:
        await self.deliver(event)
        self.wires.append(wire)


class WireKeepingOutbox(InMemoryAuditOutbox):
    """An outbox that hands out the bytes it holds, as the Valkey and store outboxes do."""

    def __init__(self, wires: dict[str, bytes], **options: Any) -> None:
        super().__init__(**options)
        self.wires = wires

    async def claim(self, count: int) -> list[OutboxEntry]:
        return [
            msgspec.structs.replace(entry, wire=self.wires[entry.event.id])
            for entry in await super().claim(count)
        ]


async def test_a_sink_that_takes_the_wire_form_gets_the_outboxs_bytes_as_they_are(
    world: World,
) -> None:
    held = {event(n).id: encode_event(event(n)) + b" " for n in (1, 2)}  # a mark of the outbox's
    outbox = WireKeepingOutbox(held, consumer="this-process", entries=world.entries)
    sink = WireSink("backend")
    recorded = await world.record(1, 2)

    assert await world.make(outbox=outbox, sinks=[sink]).flush(10.0) == 0

    assert sink.received == ids(recorded)
    assert sink.wires == [held[item.id] for item in recorded]


async def test_a_wire_sink_fed_by_an_outbox_without_bytes_gets_the_event_encoded(
    world: World,
) -> None:
    sink = WireSink("backend")
    recorded = await world.record(1, 2)

    assert await world.make(sinks=[sink, world.store]).flush(10.0) == 0

    assert sink.wires == [encode_event(item) for item in recorded]
    assert world.store.received == ids(recorded)


async def test_many_deliveries_run_through_no_more_workers_than_the_concurrency(
    world: World,
) -> None:
    await world.record(*range(40))
    started: set[asyncio.Task[Any] | None] = set()

    class TaskNoting(FakeSink):
        async def deliver(self, event: AuditEvent) -> None:
            started.add(asyncio.current_task())
            await super().deliver(event)

    sink = TaskNoting("backend")

    assert await world.make(sinks=[sink], concurrency=3).flush(10.0) == 0

    assert len(sink.received) == 40
    assert len(started) <= 3  # one task per worker, not one per delivery
