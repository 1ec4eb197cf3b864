"""The `AuditLog` adapter: the outbox, else the spool, else the error log; and the audit
readiness check that says which of them events go to."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from loguru import logger
from prometheus_client import CollectorRegistry

from adapters.audit.health import AuditHealthProbe
from adapters.audit.log import DurableAuditLog
from adapters.audit.metrics import AuditMetrics
from adapters.audit.spool import FileAuditSpool
from adapters.memory.audit_outbox import InMemoryAuditOutbox, InMemoryAuditSpool
from domain.audit import AuditAction, AuditDetails, AuditEvent, encode_event
from domain.errors import AuditUnavailableError

EVENT = AuditEvent(
    id="6f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    execution_id="exec-1",
    action=AuditAction.SET_VARIABLE,
    timestamp=datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC),
    details=AuditDetails(outcome="ok", key="k", value_hmac="hmac-sha256:" + "0" * 64),
)


class World:
    def __init__(self) -> None:
        self.outbox = InMemoryAuditOutbox()
        self.spool = InMemoryAuditSpool()
        self.registry = CollectorRegistry()
        self.woken = 0
        self.log = DurableAuditLog(
            outbox=self.outbox,
            spool=self.spool,
            metrics=AuditMetrics(self.registry),
            on_recorded=self.wake,
        )

    def wake(self) -> None:
        self.woken += 1

    def recorded(self, where: str) -> float:
        value = self.registry.get_sample_value(
            "cronium_runtime_audit_events_recorded_total", {"where": where}
        )
        return value or 0.0


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def errors_logged() -> Iterator[list[str]]:
    messages: list[str] = []
    handler = logger.add(messages.append, level="ERROR", format="{message}")
    yield messages
    logger.remove(handler)


async def test_an_event_goes_to_the_outbox_and_wakes_the_shipper(world: World) -> None:
    await world.log.record(EVENT)

    assert world.outbox.entries.events() == [EVENT]
    assert world.woken == 1
    assert world.recorded("outbox") == 1


async def test_an_event_goes_to_the_spool_while_the_outbox_cannot_be_written(
    world: World,
) -> None:
    world.outbox.refuses = True

    await world.log.record(EVENT)

    assert world.spool.events == [EVENT]
    assert world.recorded("spool") == 1
    assert world.woken == 0


async def test_with_neither_outbox_nor_spool_the_event_is_written_whole_to_the_error_log(
    world: World, errors_logged: list[str]
) -> None:
    world.outbox.refuses = True
    world.spool.refuses = True

    await world.log.record(EVENT)  # the operation was performed: its answer stands

    (message,) = errors_logged
    assert EVENT.id in message
    assert encode_event(EVENT).decode() in message
    assert world.recorded("log") == 1


async def test_an_intent_is_refused_rather_than_spooled(world: World) -> None:
    world.outbox.refuses = True

    with pytest.raises(AuditUnavailableError):
        await world.log.record_or_refuse(EVENT)

    assert world.spool.events == []


async def test_an_intent_the_outbox_takes_is_recorded(world: World) -> None:
    await world.log.record_or_refuse(EVENT)

    assert world.outbox.entries.events() == [EVENT]
    assert world.woken == 1


async def test_the_audit_check_is_up_while_the_outbox_answers(tmp_path: Path) -> None:
    probe = AuditHealthProbe(InMemoryAuditOutbox(), FileAuditSpool(tmp_path / "spool.jsonl"))

    health = await probe.check()

    assert (probe.name, health.status, health.error) == ("audit", "up", None)


async def test_the_audit_check_is_down_and_names_the_spool_while_events_go_there(
    tmp_path: Path,
) -> None:
    outbox = InMemoryAuditOutbox()
    outbox.refuses = True
    spool_path = tmp_path / "spool.jsonl"

    health = await AuditHealthProbe(outbox, FileAuditSpool(spool_path)).check()

    assert health.status == "down"
    assert health.error is not None
    assert f"events are spooled to {spool_path}" in health.error
