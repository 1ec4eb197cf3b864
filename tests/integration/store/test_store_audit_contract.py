"""The `AuditLog` and `AuditTrail` contract, held by both adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from adapters.memory.audit import InMemoryAuditLog
from adapters.sqlite.audit import SqliteAuditLog
from domain.audit import AuditAction, AuditDetails, AuditEvent

if TYPE_CHECKING:
    from conftest import OpenStore

    from adapters.memory.audit import InMemoryAuditLog as Audit

AT = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)


def event(n: int, execution_id: str | None = "exec-1") -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id=execution_id,
        action=AuditAction.SET_VARIABLE,
        timestamp=AT + timedelta(microseconds=n),
        details=AuditDetails(outcome="ok", key=f"key-{n}"),
    )


@pytest.fixture(params=["memory", "sqlite"])
async def audit(request: pytest.FixtureRequest, open_store: OpenStore) -> Audit:
    if request.param == "memory":
        return InMemoryAuditLog()
    return SqliteAuditLog(await open_store())


async def test_an_execution_with_no_events_has_an_empty_trail(audit: Audit) -> None:
    assert await audit.events_of("exec-1") == []


async def test_an_executions_events_come_back_oldest_first_and_only_its_own(
    audit: Audit,
) -> None:
    mine = [event(n) for n in range(5)]
    for n, item in enumerate(mine):
        await audit.record(item)
        await audit.record(event(100 + n, execution_id="exec-2"))
    await audit.record(event(200, execution_id=None))

    assert await audit.events_of("exec-1") == mine
    assert len(await audit.events_of("exec-2")) == 5


async def test_an_event_with_every_detail_is_read_back_unchanged(audit: Audit) -> None:
    full = AuditEvent(
        id="6f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        execution_id="exec-1",
        action=AuditAction.EXECUTE_TOOL_ACTION,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        details=AuditDetails(
            outcome="TOOL_FAILED",
            user_id="user-1",
            event_id="event-1",
            job_id="job-1",
            request_id="req-1",
            client_address="10.0.0.7",
            key="ünïcødé/key ✓",
            tool="slack",
            tool_action="send_message",
            value_hmac="hmac-sha256:" + "ab" * 32,
            intent_id="intent-1",
            count=3,
        ),
    )

    await audit.record(full)

    assert await audit.events_of("exec-1") == [full]


@pytest.mark.parametrize("action", list(AuditAction), ids=[a.value for a in AuditAction])
async def test_every_action_is_kept_as_itself(audit: Audit, action: AuditAction) -> None:
    item = AuditEvent(
        id="id-1",
        execution_id="exec-1",
        action=action,
        timestamp=AT,
        details=AuditDetails(outcome="ok"),
    )

    await audit.record(item)

    [stored] = await audit.events_of("exec-1")
    assert stored == item
    assert stored.action is action
