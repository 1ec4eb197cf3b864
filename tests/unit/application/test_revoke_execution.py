"""Revoking an execution: its tokens refused until they could have expired, and audited."""

from __future__ import annotations

import pytest

from adapters.memory.audit import InMemoryAuditLog
from adapters.memory.revocations import InMemoryRevocationList
from application.audit import AuditRecorder
from application.ports import Clock, RevocationList
from application.revoke_execution import RevokeExecution, RevokeExecutionCommand
from domain.audit import AuditAction, AuditDetails
from domain.errors import BackendUnavailableError

DAY = 86_400.0


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class UnwritableRevocationList(RevocationList):
    async def revoke(self, execution_id: str, ttl: float) -> None:
        raise BackendUnavailableError("the local store cannot be used")

    async def is_revoked(self, execution_id: str) -> bool:
        return False


def command(execution_id: str = "exec-1", request_id: str = "req-1") -> RevokeExecutionCommand:
    return RevokeExecutionCommand(
        execution_id=execution_id, request_id=request_id, client_address="10.0.0.9"
    )


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def revocations(manual_clock: ManualClock) -> InMemoryRevocationList:
    return InMemoryRevocationList(manual_clock)


@pytest.fixture
def revoke(revocations: InMemoryRevocationList, audit: AuditRecorder) -> RevokeExecution:
    return RevokeExecution(revocations=revocations, audit=audit, keep_for=DAY)


async def test_a_revoked_execution_is_revoked_and_no_other_is(
    revoke: RevokeExecution, revocations: InMemoryRevocationList
) -> None:
    await revoke.execute(command("exec-1"))

    assert await revocations.is_revoked("exec-1")
    assert not await revocations.is_revoked("exec-2")


async def test_the_revocation_lasts_as_long_as_the_longest_token_could(
    revoke: RevokeExecution, revocations: InMemoryRevocationList, manual_clock: ManualClock
) -> None:
    started = manual_clock.now
    await revoke.execute(command())

    manual_clock.now = started + DAY - 1
    assert await revocations.is_revoked("exec-1")
    manual_clock.now = started + DAY
    assert not await revocations.is_revoked("exec-1")


async def test_revoking_twice_is_no_error(
    revoke: RevokeExecution, revocations: InMemoryRevocationList
) -> None:
    await revoke.execute(command(request_id="req-1"))
    await revoke.execute(command(request_id="req-2"))

    assert await revocations.is_revoked("exec-1")


async def test_a_revocation_is_audited_about_the_execution_on_behalf_of_no_user(
    revoke: RevokeExecution, audit_log: InMemoryAuditLog, clock: Clock
) -> None:
    await revoke.execute(command("exec-1", request_id="req-9"))

    [event] = audit_log.events
    assert event.action == AuditAction.REVOKE
    assert event.execution_id == "exec-1"
    assert event.timestamp == clock.now()
    assert event.details == AuditDetails(
        outcome="ok", request_id="req-9", client_address="10.0.0.9"
    )


async def test_a_revocation_that_cannot_be_kept_fails_and_is_audited_with_its_code(
    audit: AuditRecorder, audit_log: InMemoryAuditLog
) -> None:
    revoke = RevokeExecution(revocations=UnwritableRevocationList(), audit=audit, keep_for=DAY)

    with pytest.raises(BackendUnavailableError):
        await revoke.execute(command())

    [event] = audit_log.events
    assert (event.action, event.details.outcome) == (AuditAction.REVOKE, "BACKEND_UNAVAILABLE")


def test_a_revocation_kept_for_no_time_is_refused(
    revocations: InMemoryRevocationList, audit: AuditRecorder
) -> None:
    with pytest.raises(ValueError, match="kept"):
        RevokeExecution(revocations=revocations, audit=audit, keep_for=0)
