"""Delivering the audit outbox to the sinks: at least once, and nothing lost (SPEC section 9)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from application.ports import (
    AuditDeadLetters,
    AuditOutbox,
    AuditOutboxUnavailableError,
    AuditShippingObserver,
    AuditSink,
    AuditSinkRejectedError,
    AuditSinkUnavailableError,
    AuditSpool,
    OutboxEntry,
    WireAuditSink,
)
from domain.audit import encode_event

FIRST_RETRY = 1.0  # seconds before a failed sink is tried again; doubles up to `retry_max`
WINDOW_PER_DELIVERY = 16  # entries claimed at once per parallel delivery


@dataclass
class _Held:
    """An entry this process claimed, and the sinks that are done with its event."""

    entry: OutboxEntry
    settled: set[str] = field(default_factory=set)  # sinks that hold it or refused it for good


@dataclass
class _SinkState:
    failures: int = 0  # failed attempts in a row
    paused_until: float = 0.0
    generation: int = 0  # one more at each pause: a failure counts once per pause


@dataclass
class _Round:
    claimed: int = 0  # entries claimed that this process did not hold yet
    settled: int = 0  # (entry, sink) deliveries that ended, accepted or refused
    replayed: int = 0
    outbox_failed: bool = False


class AuditShipper:
    """Delivers the outbox's events to every configured sink; one per process.

    - It claims a window of entries and delivers each to every sink, `concurrency`
      deliveries at a time (as many workers, each taking the next delivery when done with
      one: no task per delivery), handing a sink that takes it the event's wire form as the
      outbox holds it, and acknowledges an entry only once every sink holds its event.
      It remembers which sinks took an entry, so that a retry does not resend to those.
    - A sink that is unavailable is paused, for a time that doubles from `FIRST_RETRY` up to
      `retry_max` (with jitter, so that replicas do not retry in step); the entries wait for
      it and the other sinks carry on.
    - A sink's final refusal puts the event in the dead letters, named in the log by its id;
      the entry is then done for that sink, and nothing else waits for it.
    - Spooled events move to the outbox whenever it can be written.
    - `run` ships until `stop`, waking when `wake` says an event was recorded and at least
      every `poll_interval`, which also renews this process's claims (it must be well
      under `audit.claimIdle`). `flush` ships what it can before a deadline; what remains
      stays in the outbox for the next start or another process.
    """

    def __init__(
        self,
        *,
        outbox: AuditOutbox,
        sinks: Sequence[AuditSink],
        spool: AuditSpool,
        dead_letters: AuditDeadLetters,
        observer: AuditShippingObserver,
        concurrency: int,
        retry_max: float,
        poll_interval: float,
        trim_interval: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not sinks:
            raise ValueError("the audit shipper needs at least one sink")
        self._outbox = outbox
        self._sinks = list(sinks)
        self._spool = spool
        self._dead_letters = dead_letters
        self._observer = observer
        self._concurrency = concurrency
        self._window = concurrency * WINDOW_PER_DELIVERY
        self._retry_max = retry_max
        self._poll_interval = poll_interval
        self._trim_interval = trim_interval
        self._monotonic = monotonic
        self._sleep = sleep
        self._jitter = jitter
        self._held: dict[str, _Held] = {}
        self._states = {sink.name: _SinkState() for sink in self._sinks}
        # Checked once: isinstance against a runtime protocol is slow.
        self._wire_sinks = {
            sink.name: sink for sink in self._sinks if isinstance(sink, WireAuditSink)
        }
        self._wake = asyncio.Event()
        self._stopping = False
        self._rounds = asyncio.Lock()  # `run` and `flush` never ship at the same time
        self._last_backlog = -float("inf")
        self._last_trim = -float("inf")

    @property
    def holding(self) -> int:
        """Entries this process claimed and has not acknowledged."""
        return len(self._held)

    def wake(self) -> None:
        """An event was recorded: ship now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Make `run` return after its current round, or at once if it is waiting."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Ship until `stop` (or cancelled). A failed round is reported and tried again."""
        # A flag as well as cancellation: a client library that swallows a cancellation
        # (valkey-py can, when it lands during a command) would leave the loop running.
        while not self._stopping:
            try:
                async with self._rounds:
                    await self._round()
            except Exception as error:  # a bug in an adapter must not stop the trail
                self._observer.trouble("an audit shipping round failed", error)
            if not self._stopping:
                await self._idle(self._next_wait())

    async def flush(self, within: float, *, patient: bool = False) -> int:
        """Ship what can be shipped, for `within` seconds at most; the number of events this
        process still holds (they stay pending in the outbox).

        It ends once nothing is left, or when nothing moves and what remains waits for a
        sink that is failing: at shutdown a sink that is down must not hold the process
        back, since its events are safe in the outbox. `patient` also waits out such a
        sink's pauses that end before the deadline (`run`'s summary counts the events the
        store's trail holds).
        """
        deadline = self._monotonic() + within
        async with self._rounds:
            while (remaining := deadline - self._monotonic()) > 0:
                try:
                    async with asyncio.timeout(remaining):
                        done = await self._round()
                except TimeoutError:
                    break
                except Exception as error:  # as in `run`: reported, and the rest stays
                    self._observer.trouble("an audit shipping round failed", error)
                    break
                if not self._held and (
                    done.outbox_failed or (done.claimed == 0 and not done.replayed)
                ):
                    break
                if done.settled or done.claimed or done.replayed:
                    continue
                wait = self._next_wait()
                if not patient or self._monotonic() + wait >= deadline:
                    break
                await self._sleep(wait)
        return len(self._held)

    async def _round(self) -> _Round:
        done = _Round()
        await self._replay_spool(done)
        await self._claim(done)
        await self._deliver(done)
        await self._acknowledge(done)
        await self._housekeep()
        return done

    async def _replay_spool(self, done: _Round) -> None:
        try:
            done.replayed = await self._spool.replay(self._outbox.append)
        except AuditOutboxUnavailableError:
            return  # Valkey is still away: the events stay spooled
        except OSError as error:
            self._observer.trouble("the audit spool cannot be replayed", error)
            return
        if done.replayed:
            self._observer.replayed(done.replayed)
            self._wake.set()

    async def _claim(self, done: _Round) -> None:
        try:
            entries = await self._outbox.claim(self._window)
        except AuditOutboxUnavailableError as error:
            done.outbox_failed = True
            self._observer.trouble("the audit outbox cannot be read", error)
            return
        for entry in entries:
            if entry.entry_id not in self._held:
                self._held[entry.entry_id] = _Held(entry)
                done.claimed += 1

    async def _deliver(self, done: _Round) -> None:
        now = self._monotonic()
        ready = {name for name, state in self._states.items() if state.paused_until <= now}
        deliveries = deque(
            (held, sink)
            for held in list(self._held.values())
            for sink in self._sinks
            if sink.name in ready and sink.name not in held.settled
        )
        workers = min(self._concurrency, len(deliveries))
        if workers == 1:
            await self._work(deliveries, done)
        elif workers:
            await asyncio.gather(*(self._work(deliveries, done) for _ in range(workers)))

    async def _work(self, deliveries: deque[tuple[_Held, AuditSink]], done: _Round) -> None:
        """One delivery in flight at a time, the next one taken as soon as it ends."""
        while deliveries:
            held, sink = deliveries.popleft()
            await self._deliver_one(held, sink, done)

    async def _deliver_one(self, held: _Held, sink: AuditSink, done: _Round) -> None:
        state = self._states[sink.name]
        if state.paused_until > self._monotonic():
            return  # another delivery to it failed meanwhile: wait for the pause
        generation = state.generation
        event = held.entry.event
        try:
            wire_sink = self._wire_sinks.get(sink.name)
            if wire_sink is not None:
                wire = held.entry.wire
                await wire_sink.deliver_wire(event, encode_event(event) if wire is None else wire)
            else:
                await sink.deliver(event)
        except AuditSinkRejectedError as refusal:
            try:
                await self._dead_letters.keep(event, sink.name, str(refusal))
            except Exception as error:  # kept nowhere yet: deliver it again later
                self._failed(sink.name, generation, error)
                return
            self._observer.rejected(sink.name, event.id, str(refusal))
        except AuditSinkUnavailableError as error:
            self._failed(sink.name, generation, error)
            return
        except Exception as error:  # a sink's bug is retried like an outage, and logged
            self._failed(sink.name, generation, error)
            return
        else:
            self._observer.delivered(sink.name)
        held.settled.add(sink.name)
        done.settled += 1
        if state.failures:
            state.failures = 0
            self._observer.recovered(sink.name)

    def _failed(self, sink: str, generation: int, error: Exception) -> None:
        state = self._states[sink]
        first = state.failures == 0
        if state.generation == generation:
            # The first failure since the sink was last tried pauses it; failures of the
            # deliveries that were in flight with it only count as retries.
            state.failures += 1
            state.generation += 1
            delay = min(self._retry_max, FIRST_RETRY * 2 ** (state.failures - 1))
            delay *= 0.5 + 0.5 * self._jitter()
            state.paused_until = self._monotonic() + delay
        else:
            delay = max(0.0, state.paused_until - self._monotonic())
        self._observer.retrying(sink, f"{type(error).__name__}: {error}", delay, first=first)

    async def _acknowledge(self, done: _Round) -> None:
        every_sink = set(self._states)
        finished = [key for key, held in self._held.items() if held.settled >= every_sink]
        if not finished:
            return
        try:
            await self._outbox.ack(finished)
        except AuditOutboxUnavailableError as error:
            # Delivered and remembered as such: acknowledged at a later round, not resent.
            done.outbox_failed = True
            self._observer.trouble("the audit outbox cannot be acknowledged", error)
            return
        for key in finished:
            del self._held[key]

    async def _housekeep(self) -> None:
        now = self._monotonic()
        if now - self._last_backlog >= self._poll_interval:
            self._last_backlog = now
            with contextlib.suppress(AuditOutboxUnavailableError):  # the claim said so
                self._observer.backlog(await self._outbox.backlog())
        if now - self._last_trim >= self._trim_interval:
            self._last_trim = now
            with contextlib.suppress(AuditOutboxUnavailableError):
                await self._outbox.trim()

    def _next_wait(self) -> float:
        """Until the next poll, or sooner when a sink that a held entry needs resumes."""
        wait = self._poll_interval
        now = self._monotonic()
        needed = {
            name
            for held in self._held.values()
            for name in self._states
            if name not in held.settled
        }
        for name in needed:
            wait = min(wait, max(0.0, self._states[name].paused_until - now))
        return wait

    async def _idle(self, seconds: float) -> None:
        """Sleep `seconds`, or less when `wake` is called."""
        if not self._wake.is_set():
            woken = asyncio.ensure_future(self._wake.wait())
            slept = asyncio.ensure_future(self._sleep(seconds))
            try:
                await asyncio.wait({woken, slept}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in (woken, slept):
                    waiting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiting
        self._wake.clear()
