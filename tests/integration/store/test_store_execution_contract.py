"""The `ExecutionRepository` and `ExecutionCatalog` contract, held by both adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from adapters.memory.executions import InMemoryExecutionRepository
from adapters.sqlite.executions import SqliteExecutionRepository
from domain.errors import ExecutionNotFoundError
from domain.model import ExecutionContext, ExecutionOutcome

if TYPE_CHECKING:
    from conftest import OpenStore, TickingClock

    from adapters.memory.executions import InMemoryExecutionRepository as Executions

AT = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)

FULL = ExecutionContext(
    execution_id="exec-1",
    user_id="user-1",
    job_id="job-1",
    event_id="event-1",
    metadata={
        "input": {"rows": [1, 2, {"deep": [None, "ünïcødé ✓ 🎉"]}], "flag": False},
        "source": None,
    },
    event={"id": "event-1", "name": "Nightly 日本", "type": "PYTHON", "tags": []},
    user={"id": "user-1", "email": "a@example.org"},
    start_time=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-5))),
)
BARE = ExecutionContext(execution_id="exec-2", user_id="user-1")


@pytest.fixture(params=["memory", "sqlite"])
async def executions(
    request: pytest.FixtureRequest, open_store: OpenStore, clock: TickingClock
) -> Executions:
    if request.param == "memory":
        return InMemoryExecutionRepository(clock=clock)
    return SqliteExecutionRepository(await open_store(), clock=clock)


async def test_a_created_execution_is_read_back_unchanged(executions: Executions) -> None:
    await executions.create(FULL)

    context = await executions.get_context("exec-1")

    assert context == FULL
    assert context.input == FULL.metadata["input"]
    assert context.start_time is not None
    assert context.start_time.microsecond == 678901


async def test_an_execution_without_event_or_user_reads_back_with_none(
    executions: Executions,
) -> None:
    await executions.create(BARE)

    context = await executions.get_context("exec-2")

    assert (context.metadata, context.event, context.user, context.input) == ({}, None, None, None)
    assert (context.job_id, context.event_id) == (None, None)


async def test_reading_an_unknown_execution_raises_not_found(executions: Executions) -> None:
    with pytest.raises(ExecutionNotFoundError) as raised:
        await executions.get_context("nobody")

    assert raised.value.execution_id == "nobody"


async def test_a_context_without_start_time_gets_the_time_of_its_first_read_and_keeps_it(
    executions: Executions, clock: TickingClock
) -> None:
    await executions.create(BARE)

    first = await executions.get_context("exec-2")
    again = await executions.get_context("exec-2")

    assert first.start_time in clock.readings
    assert again.start_time == first.start_time
    assert clock.now() > first.start_time


async def test_a_start_time_from_the_system_of_record_is_kept(
    executions: Executions, clock: TickingClock
) -> None:
    await executions.create(FULL)

    assert (await executions.get_context("exec-1")).start_time == FULL.start_time
    assert (await executions.get_context("exec-1")).start_time == FULL.start_time
    assert FULL.start_time not in clock.readings


async def test_an_execution_that_set_nothing_has_an_empty_outcome(executions: Executions) -> None:
    await executions.create(BARE)

    assert await executions.outcome("exec-2") == ExecutionOutcome(
        execution_id="exec-2", has_output=False, output=None, condition=None
    )


@pytest.mark.parametrize(
    "output",
    [None, {"result": [1, {"ok": True}], "text": "fertig ✓"}, "", 0, False, []],
    ids=["null", "nested", "empty string", "zero", "false", "empty list"],
)
async def test_an_output_saved_is_the_outcomes_output(executions: Executions, output: Any) -> None:
    await executions.create(BARE)

    await executions.save_output("exec-2", output, AT)

    assert await executions.outcome("exec-2") == ExecutionOutcome(
        execution_id="exec-2", has_output=True, output=output, condition=None
    )


async def test_the_last_output_and_condition_saved_win(executions: Executions) -> None:
    await executions.create(BARE)

    await executions.save_output("exec-2", {"first": 1}, AT)
    await executions.save_condition("exec-2", True, AT)
    await executions.save_output("exec-2", ["second"], AT)
    await executions.save_condition("exec-2", False, AT)

    assert await executions.outcome("exec-2") == ExecutionOutcome(
        execution_id="exec-2", has_output=True, output=["second"], condition=False
    )


async def test_a_condition_alone_leaves_the_output_unset(executions: Executions) -> None:
    await executions.create(BARE)

    await executions.save_condition("exec-2", True, AT)

    assert await executions.outcome("exec-2") == ExecutionOutcome(
        execution_id="exec-2", has_output=False, output=None, condition=True
    )


async def test_outputs_and_conditions_belong_to_their_execution(executions: Executions) -> None:
    await executions.create(FULL)
    await executions.create(BARE)

    await executions.save_output("exec-1", "one", AT)
    await executions.save_condition("exec-1", True, AT)

    assert (await executions.outcome("exec-2")).has_output is False
    assert (await executions.outcome("exec-2")).condition is None


async def test_saving_an_output_for_an_unknown_execution_raises_not_found(
    executions: Executions,
) -> None:
    with pytest.raises(ExecutionNotFoundError):
        await executions.save_output("nobody", {"x": 1}, AT)
    with pytest.raises(ExecutionNotFoundError):
        await executions.get_context("nobody")


async def test_saving_a_condition_for_an_unknown_execution_raises_not_found(
    executions: Executions,
) -> None:
    with pytest.raises(ExecutionNotFoundError):
        await executions.save_condition("nobody", True, AT)


async def test_the_outcome_of_an_unknown_execution_raises_not_found(
    executions: Executions,
) -> None:
    with pytest.raises(ExecutionNotFoundError):
        await executions.outcome("nobody")


@pytest.mark.parametrize("executions", ["memory", "sqlite"], indirect=True)
async def test_creating_an_execution_id_twice_is_refused_and_keeps_the_first(
    executions: Executions,
) -> None:
    await executions.create(FULL)
    await executions.save_output("exec-1", "kept", AT)
    impostor = ExecutionContext(execution_id="exec-1", user_id="someone-else")

    try:
        await executions.create(impostor)
    except ValueError as refused:
        assert "exec-1" in str(refused)
    else:
        pytest.fail("a second execution with the same id was accepted")

    assert await executions.get_context("exec-1") == FULL
    assert (await executions.outcome("exec-1")).output == "kept"
