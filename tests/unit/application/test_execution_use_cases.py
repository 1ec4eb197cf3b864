"""GetInput, SetOutput, SetCondition and GetContext: what a script learns about, and tells,
its own execution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from application.get_context import GetContext, GetContextCommand
from application.get_input import GetInput, GetInputCommand
from application.set_condition import SetCondition, SetConditionCommand
from application.set_output import SetOutput, SetOutputCommand
from domain.errors import ExecutionMismatchError, ExecutionNotFoundError
from domain.model import ExecutionContext

ALICE_INPUT = {"orders": [{"id": 1, "sku": "ä-42"}], "dryRun": False, "note": None}


def with_input(execution_id: str, user_id: str, metadata: dict) -> ExecutionContext:
    return ExecutionContext(execution_id=execution_id, user_id=user_id, metadata=metadata)


# GetInput


async def test_reading_the_input_returns_what_the_execution_was_started_with(
    executions, audit, alice
):
    executions.add(with_input("exec-alice-1", "alice", {"input": ALICE_INPUT, "other": 1}))
    get_input = GetInput(executions=executions, audit=audit)

    result = await get_input.execute(GetInputCommand(context=alice, execution_id="exec-alice-1"))

    assert result == ALICE_INPUT


@pytest.mark.parametrize("input_value", [[1, "two", 3.5], "plain text", 0, False])
async def test_an_input_may_be_any_json_value(executions, audit, alice, input_value):
    executions.add(with_input("exec-alice-1", "alice", {"input": input_value}))
    get_input = GetInput(executions=executions, audit=audit)

    result = await get_input.execute(GetInputCommand(context=alice, execution_id="exec-alice-1"))

    assert result == input_value


async def test_reading_the_input_of_an_execution_started_without_one_returns_none(
    executions, audit, alice
):
    executions.add(with_input("exec-alice-1", "alice", {"trigger": "schedule"}))
    get_input = GetInput(executions=executions, audit=audit)

    result = await get_input.execute(GetInputCommand(context=alice, execution_id="exec-alice-1"))

    assert result is None


async def test_reading_another_executions_input_is_refused(executions, audit, alice):
    executions.add(with_input("exec-alice-2", "alice", {"input": "not yours"}))
    get_input = GetInput(executions=executions, audit=audit)

    with pytest.raises(ExecutionMismatchError) as refused:
        await get_input.execute(GetInputCommand(context=alice, execution_id="exec-alice-2"))

    assert "exec-alice-1" in refused.value.message
    assert "exec-alice-2" in refused.value.message


async def test_reading_the_input_of_an_unknown_execution_raises_not_found(
    executions, audit, stranger
):
    get_input = GetInput(executions=executions, audit=audit)

    with pytest.raises(ExecutionNotFoundError) as missing:
        await get_input.execute(GetInputCommand(context=stranger, execution_id="exec-unknown"))

    assert missing.value.execution_id == "exec-unknown"


# SetOutput


async def test_setting_the_output_stores_it_for_the_execution(executions, clock, audit, alice):
    set_output = SetOutput(executions=executions, clock=clock, audit=audit)

    await set_output.execute(
        SetOutputCommand(context=alice, execution_id="exec-alice-1", output={"total": 3})
    )

    assert executions.outputs == {"exec-alice-1": {"total": 3}}


async def test_the_output_is_stamped_with_the_runtimes_clock(executions, clock, audit, alice):
    clock.moment = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    set_output = SetOutput(executions=executions, clock=clock, audit=audit)

    await set_output.execute(SetOutputCommand(context=alice, execution_id="exec-alice-1", output=1))

    assert executions.output_times["exec-alice-1"] == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_a_later_output_replaces_the_earlier_one(executions, clock, audit, alice):
    set_output = SetOutput(executions=executions, clock=clock, audit=audit)

    await set_output.execute(
        SetOutputCommand(context=alice, execution_id="exec-alice-1", output="first")
    )
    await set_output.execute(
        SetOutputCommand(context=alice, execution_id="exec-alice-1", output=["second"])
    )

    assert executions.outputs == {"exec-alice-1": ["second"]}


async def test_a_null_output_is_stored_as_null(executions, clock, audit, alice):
    set_output = SetOutput(executions=executions, clock=clock, audit=audit)

    await set_output.execute(
        SetOutputCommand(context=alice, execution_id="exec-alice-1", output=None)
    )

    assert "exec-alice-1" in executions.outputs
    assert executions.outputs["exec-alice-1"] is None


async def test_setting_another_executions_output_is_refused_and_stores_nothing(
    executions, clock, audit, alice
):
    set_output = SetOutput(executions=executions, clock=clock, audit=audit)

    with pytest.raises(ExecutionMismatchError):
        await set_output.execute(
            SetOutputCommand(context=alice, execution_id="exec-alice-2", output="hijack")
        )

    assert executions.outputs == {}


async def test_setting_the_output_of_an_unknown_execution_raises_not_found(
    executions, clock, audit, stranger
):
    set_output = SetOutput(executions=executions, clock=clock, audit=audit)

    with pytest.raises(ExecutionNotFoundError):
        await set_output.execute(
            SetOutputCommand(context=stranger, execution_id="exec-unknown", output=1)
        )

    assert executions.outputs == {}


# SetCondition


@pytest.mark.parametrize("condition", [True, False])
async def test_setting_the_condition_stores_it_for_the_execution(
    executions, clock, audit, alice, condition
):
    set_condition = SetCondition(executions=executions, clock=clock, audit=audit)

    await set_condition.execute(
        SetConditionCommand(context=alice, execution_id="exec-alice-1", condition=condition)
    )

    assert executions.conditions == {"exec-alice-1": condition}


async def test_the_condition_is_stamped_with_the_runtimes_clock(executions, clock, audit, alice):
    clock.moment = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    set_condition = SetCondition(executions=executions, clock=clock, audit=audit)

    await set_condition.execute(
        SetConditionCommand(context=alice, execution_id="exec-alice-1", condition=True)
    )

    assert executions.condition_times["exec-alice-1"] == datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


async def test_a_later_condition_replaces_the_earlier_one(executions, clock, audit, alice):
    set_condition = SetCondition(executions=executions, clock=clock, audit=audit)

    await set_condition.execute(
        SetConditionCommand(context=alice, execution_id="exec-alice-1", condition=True)
    )
    await set_condition.execute(
        SetConditionCommand(context=alice, execution_id="exec-alice-1", condition=False)
    )

    assert executions.conditions == {"exec-alice-1": False}


async def test_setting_another_executions_condition_is_refused_and_stores_nothing(
    executions, clock, audit, alice
):
    set_condition = SetCondition(executions=executions, clock=clock, audit=audit)

    with pytest.raises(ExecutionMismatchError):
        await set_condition.execute(
            SetConditionCommand(context=alice, execution_id="exec-bob-1", condition=True)
        )

    assert executions.conditions == {}


async def test_setting_the_condition_of_an_unknown_execution_raises_not_found(
    executions, clock, audit, stranger
):
    set_condition = SetCondition(executions=executions, clock=clock, audit=audit)

    with pytest.raises(ExecutionNotFoundError):
        await set_condition.execute(
            SetConditionCommand(context=stranger, execution_id="exec-unknown", condition=True)
        )

    assert executions.conditions == {}


# GetContext


async def test_reading_the_context_returns_the_execution_as_the_system_of_record_holds_it(
    executions, audit, alice
):
    started = datetime(2026, 11, 28, 18, 0, 0, 250000, tzinfo=UTC)
    stored = ExecutionContext(
        execution_id="exec-alice-1",
        user_id="alice",
        job_id="job-11",
        event_id="event-7",
        metadata={"input": ALICE_INPUT, "attempt": 2},
        event={"id": "event-7", "name": "Nightly report", "type": "PYTHON"},
        user={"id": "alice", "email": "alice@example.com", "name": "Alice"},
        start_time=started,
    )
    executions.add(stored)
    get_context = GetContext(executions=executions, audit=audit)

    context = await get_context.execute(
        GetContextCommand(context=alice, execution_id="exec-alice-1")
    )

    assert context == stored
    assert context.start_time == started
    assert context.input == ALICE_INPUT


async def test_a_context_without_a_start_time_gets_the_time_of_its_first_read(
    executions, audit, alice
):
    get_context = GetContext(executions=executions, audit=audit)
    before = datetime.now(UTC)

    context = await get_context.execute(
        GetContextCommand(context=alice, execution_id="exec-alice-1")
    )

    assert before <= context.start_time <= datetime.now(UTC)
    assert (context.execution_id, context.user_id) == ("exec-alice-1", "alice")


async def test_a_start_time_filled_at_the_first_read_stays_the_same_on_later_reads(
    executions, audit, alice
):
    get_context = GetContext(executions=executions, audit=audit)
    first = await get_context.execute(GetContextCommand(context=alice, execution_id="exec-alice-1"))
    await asyncio.sleep(0.002)

    second = await get_context.execute(
        GetContextCommand(context=alice, execution_id="exec-alice-1")
    )

    assert second.start_time == first.start_time


async def test_a_context_without_input_says_its_input_is_none(executions, audit, alice):
    get_context = GetContext(executions=executions, audit=audit)

    context = await get_context.execute(
        GetContextCommand(context=alice, execution_id="exec-alice-1")
    )

    assert context.metadata == {}
    assert context.input is None
    assert context.event is None
    assert context.user is None


async def test_reading_another_executions_context_is_refused(executions, audit, alice):
    get_context = GetContext(executions=executions, audit=audit)

    with pytest.raises(ExecutionMismatchError):
        await get_context.execute(GetContextCommand(context=alice, execution_id="exec-bob-1"))


async def test_reading_the_context_of_an_unknown_execution_raises_not_found(
    executions, audit, stranger
):
    get_context = GetContext(executions=executions, audit=audit)

    with pytest.raises(ExecutionNotFoundError):
        await get_context.execute(GetContextCommand(context=stranger, execution_id="exec-unknown"))
