"""The audit outbox's wiring: which outbox, the shipper's task with the container's resources,
and its flush at shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from prometheus_client import CollectorRegistry

from adapters.audit.health import AuditHealthProbe
from adapters.audit.log import DurableAuditLog
from adapters.audit.metrics import AuditMetrics
from adapters.memory.audit_outbox import (
    InMemoryAuditDeadLetters,
    InMemoryAuditOutbox,
    InMemoryAuditSpool,
)
from adapters.sqlite.audit_outbox import SqliteAuditOutbox
from adapters.valkey.audit_outbox import ValkeyAuditOutbox
from application.audit_shipping import AuditShipper
from application.ports import AuditSink, AuditSinkUnavailableError
from domain.audit import AuditAction, AuditDetails, AuditEvent
from entrypoints.audit_shipping import audit_shipping, poll_interval, trim_interval
from entrypoints.container import Container
from entrypoints.settings import load_settings

SECRET = "s" * 40


def settings_for(tmp_path: Path, **environ: str) -> Any:
    return load_settings({"HOME": str(tmp_path), "JWT_SECRET": SECRET, **environ}, cwd=tmp_path)


def event(n: int) -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id="exec-1",
        action=AuditAction.GET_INPUT,
        timestamp=datetime(2026, 11, 28, tzinfo=UTC),
        details=AuditDetails(outcome="ok"),
    )


class Sink(AuditSink):
    def __init__(self, name: str = "store") -> None:
        self.name = name
        self.received: list[str] = []
        self.down = False
        self.closed = False

    async def deliver(self, item: AuditEvent) -> None:
        if self.down:
            raise AuditSinkUnavailableError("down")
        self.received.append(item.id)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    messages: list[str] = []
    handler = logger.add(messages.append, level="WARNING", format="{message}")
    yield messages
    logger.remove(handler)


def test_without_valkey_the_outbox_is_the_local_store(tmp_path: Path) -> None:
    container = Container(settings=settings_for(tmp_path))

    assert isinstance(container.audit_outbox(), SqliteAuditOutbox)
    assert isinstance(container.audit_log(), DurableAuditLog)
    assert any(isinstance(p, AuditHealthProbe) for p in container.health_probes())


def test_with_valkey_the_outbox_is_its_stream(tmp_path: Path) -> None:
    container = Container(settings=settings_for(tmp_path, VALKEY_URL="valkey://127.0.0.1:6379"))

    assert isinstance(container.audit_outbox(), ValkeyAuditOutbox)


def test_the_shipper_polls_well_within_the_claim_idle_time(tmp_path: Path) -> None:
    assert poll_interval(settings_for(tmp_path)) == 1.0
    assert poll_interval(settings_for(tmp_path, AUDIT_CLAIM_IDLE="2s")) == 0.5
    assert trim_interval(settings_for(tmp_path)) == 60.0
    assert trim_interval(settings_for(tmp_path, AUDIT_STREAM_MAX_AGE="10s")) == 5.0


def make_shipper(outbox: InMemoryAuditOutbox, sink: Sink) -> AuditShipper:
    return AuditShipper(
        outbox=outbox,
        sinks=[sink],
        spool=InMemoryAuditSpool(),
        dead_letters=InMemoryAuditDeadLetters(),
        observer=AuditMetrics(CollectorRegistry()),
        concurrency=2,
        retry_max=60.0,
        poll_interval=0.01,
        trim_interval=60.0,
    )


async def test_the_shipper_runs_with_the_resources_and_closes_the_sinks_after(
    tmp_path: Path,
) -> None:
    outbox, sink = InMemoryAuditOutbox(), Sink()
    shipper = make_shipper(outbox, sink)
    lifecycle = audit_shipping(shipper, [sink], 5.0)

    await lifecycle.__anext__()
    await outbox.append(event(1))
    shipper.wake()
    deadline = time.monotonic() + 5
    while not sink.received and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    with pytest.raises(StopAsyncIteration):
        await lifecycle.__anext__()

    assert sink.received == [event(1).id]
    assert sink.closed


async def test_at_shutdown_what_a_sink_did_not_take_stays_in_the_outbox(
    tmp_path: Path, warnings_logged: list[str]
) -> None:
    outbox, sink = InMemoryAuditOutbox(), Sink()
    sink.down = True
    await outbox.append(event(1))
    lifecycle = audit_shipping(make_shipper(outbox, sink), [sink], 0.2)

    await lifecycle.__anext__()
    with pytest.raises(StopAsyncIteration):
        await lifecycle.__anext__()

    assert outbox.entries.events() == [event(1)]
    assert any("1 audit events were not delivered" in line for line in warnings_logged)
    assert sink.closed


class ThreadedSink(Sink):
    """Writes in a thread, as the file sink does: a write under way finishes even when the
    delivery awaiting it is cancelled."""

    def __init__(self) -> None:
        super().__init__("file")
        self.writing = asyncio.Event()

    async def deliver(self, item: AuditEvent) -> None:
        self.writing.set()
        await asyncio.to_thread(self._write, item.id)

    def _write(self, event_id: str) -> None:
        time.sleep(0.2)
        self.received.append(event_id)


async def test_a_delivery_under_way_at_shutdown_is_finished_not_made_twice(
    tmp_path: Path,
) -> None:
    outbox, sink = InMemoryAuditOutbox(), ThreadedSink()
    shipper = make_shipper(outbox, sink)
    lifecycle = audit_shipping(shipper, [sink], 5.0)
    await lifecycle.__anext__()
    await outbox.append(event(1))
    shipper.wake()
    await asyncio.wait_for(sink.writing.wait(), 5.0)

    with pytest.raises(StopAsyncIteration):
        await lifecycle.__anext__()

    assert sink.received == [event(1).id]
    assert outbox.entries.events() == []
