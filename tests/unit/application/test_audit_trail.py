"""The audit trail (SPEC section 9): one event per operation, whatever its outcome, carrying
who asked and an HMAC of the value that moved, never the value itself."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from application.audit import AuditRecorder
from application.delete_variable import DeleteVariable, DeleteVariableCommand
from application.get_context import GetContext, GetContextCommand
from application.get_input import GetInput, GetInputCommand
from application.get_variable import GetVariable, GetVariableCommand
from application.list_variables import ListVariables, ListVariablesCommand
from application.ports import Clock, ExecutionRepository, ToolGateway, VariableRepository
from application.run_tool_action import RunToolAction, RunToolActionCommand
from application.set_condition import SetCondition, SetConditionCommand
from application.set_output import SetOutput, SetOutputCommand
from application.set_variable import SetVariable, SetVariableCommand
from domain.audit import AuditAction, decode_event, encode_event
from domain.errors import (
    AuditUnavailableError,
    DomainError,
    ExecutionMismatchError,
    ToolNotFoundError,
)
from domain.model import ExecutionContext, Principal, RequestContext, ToolResult

# Raw values, each distinctive enough that finding it in an encoded event means it leaked.
RAW_INPUT = {"apiKey": "raw-input-4f1c9e"}
RAW_OUTPUT = {"report": "raw-output-77ab02"}
RAW_STORED = {"token": "raw-stored-c0ffee"}
RAW_WRITTEN = ["raw-written-5eed42"]
RAW_PARAMS = {"text": "raw-params-beef17", "channel": "#ops"}
RAW_MARKERS = [b"raw-input", b"raw-output", b"raw-stored", b"raw-written", b"raw-params"]
KEY = "api/secret"
NOTHING_MOVED = object()


@dataclass
class World:
    executions: ExecutionRepository
    variables: VariableRepository
    tools: ToolGateway
    clock: Clock
    audit: AuditRecorder


Run = Callable[[World, RequestContext, str], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    action: AuditAction
    run: Run
    moved: Any = NOTHING_MOVED
    key: str | None = None
    tool: str | None = None
    tool_action: str | None = None


def get_input(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    return GetInput(executions=w.executions, audit=w.audit).execute(
        GetInputCommand(context=context, execution_id=execution_id)
    )


def set_output(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    return SetOutput(executions=w.executions, clock=w.clock, audit=w.audit).execute(
        SetOutputCommand(context=context, execution_id=execution_id, output=RAW_OUTPUT)
    )


def get_variable(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    return GetVariable(variables=w.variables, audit=w.audit).execute(
        GetVariableCommand(context=context, execution_id=execution_id, key=KEY)
    )


def set_variable(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    return SetVariable(variables=w.variables, clock=w.clock, audit=w.audit).execute(
        SetVariableCommand(context=context, execution_id=execution_id, key=KEY, value=RAW_WRITTEN)
    )


def delete_variable(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    return DeleteVariable(variables=w.variables, audit=w.audit).execute(
        DeleteVariableCommand(context=context, execution_id=execution_id, key=KEY)
    )


def list_variables(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    return ListVariables(variables=w.variables, audit=w.audit).execute(
        ListVariablesCommand(context=context, execution_id=execution_id)
    )


def set_condition(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    return SetCondition(executions=w.executions, clock=w.clock, audit=w.audit).execute(
        SetConditionCommand(context=context, execution_id=execution_id, condition=True)
    )


def get_context(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    return GetContext(executions=w.executions, audit=w.audit).execute(
        GetContextCommand(context=context, execution_id=execution_id)
    )


def run_tool_action(w: World, context: RequestContext, execution_id: str) -> Awaitable[Any]:
    # A tool action names no execution: it always acts for the token's own.
    return RunToolAction(tools=w.tools, audit=w.audit).execute(
        RunToolActionCommand(
            context=context, tool="slack", action="send_message", params=RAW_PARAMS
        )
    )


OPERATIONS = {
    "get_input": Operation(AuditAction.GET_INPUT, get_input, moved=RAW_INPUT),
    "set_output": Operation(AuditAction.SET_OUTPUT, set_output, moved=RAW_OUTPUT),
    "get_variable": Operation(AuditAction.GET_VARIABLE, get_variable, moved=RAW_STORED, key=KEY),
    "set_variable": Operation(AuditAction.SET_VARIABLE, set_variable, moved=RAW_WRITTEN, key=KEY),
    "delete_variable": Operation(AuditAction.DELETE_VARIABLE, delete_variable, key=KEY),
    "list_variables": Operation(AuditAction.LIST_VARIABLES, list_variables),
    "set_condition": Operation(AuditAction.SET_CONDITION, set_condition),
    "get_context": Operation(AuditAction.GET_CONTEXT, get_context),
    "execute_tool_action": Operation(
        AuditAction.EXECUTE_TOOL_ACTION,
        run_tool_action,
        moved=RAW_PARAMS,
        tool="slack",
        tool_action="send_message",
    ),
}
EXECUTION_OPERATIONS = {
    name: operation for name, operation in OPERATIONS.items() if name != "execute_tool_action"
}
SYSTEM_OF_RECORD_OPERATIONS = ["get_input", "set_output", "set_condition", "get_context"]


def every(operations: dict[str, Operation]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("operation", operations.values(), ids=operations.keys())


@pytest.fixture
async def world(executions, variables, tools, clock, audit) -> World:
    """Alice's first run, started with an input, and a variable of hers already stored."""
    executions.add(
        ExecutionContext(
            execution_id="exec-alice-1",
            user_id="alice",
            event_id="event-7",
            job_id="job-11",
            metadata={"input": RAW_INPUT},
            event={"id": "event-7", "name": "Rotate keys", "type": "PYTHON"},
        )
    )
    await variables.put("alice", KEY, RAW_STORED, clock.now())
    return World(executions, variables, tools, clock, audit)


@pytest.fixture
def broken_world(exploding_executions, exploding_variables, tools, clock, audit) -> World:
    tools.error = RuntimeError("the tool gateway is on fire")
    return World(exploding_executions, exploding_variables, tools, clock, audit)


# Operations that succeed


@every(OPERATIONS)
async def test_each_operation_records_exactly_one_event_saying_who_did_what(
    world, audit_log, clock, alice, operation
):
    await operation.run(world, alice, "exec-alice-1")

    [event] = audit_log.events
    assert event.action == operation.action
    assert event.execution_id == "exec-alice-1"
    assert event.timestamp == clock.now()
    assert uuid.UUID(event.id).version == 4
    details = event.details
    assert details.outcome == "ok"
    assert (details.user_id, details.event_id, details.job_id) == ("alice", "event-7", "job-11")
    assert (details.request_id, details.client_address) == ("req-a1", "10.1.2.3")
    assert (details.key, details.tool, details.tool_action) == (
        operation.key,
        operation.tool,
        operation.tool_action,
    )
    assert (details.intent_id, details.count) == (None, None)


@every(OPERATIONS)
async def test_the_value_that_moved_is_recorded_only_as_its_hmac(
    world, audit_log, alice, fingerprint, operation
):
    await operation.run(world, alice, "exec-alice-1")

    [event] = audit_log.events
    if operation.moved is NOTHING_MOVED:
        assert event.details.value_hmac is None
    else:
        assert event.details.value_hmac == fingerprint(operation.moved)


@every(OPERATIONS)
async def test_no_raw_value_appears_anywhere_in_the_encoded_event(
    world, audit_log, alice, operation
):
    await operation.run(world, alice, "exec-alice-1")

    [event] = audit_log.events
    encoded = msgspec.json.encode(event)
    assert [marker for marker in RAW_MARKERS if marker in encoded] == []


async def test_a_null_variable_read_is_fingerprinted_as_null(world, audit_log, alice, fingerprint):
    await world.variables.put("alice", KEY, None, world.clock.now())

    await get_variable(world, alice, "exec-alice-1")

    [event] = audit_log.events
    assert event.details.value_hmac == fingerprint(None)
    assert event.details.value_hmac != fingerprint("null")


async def test_unknown_claims_are_null_and_absent_optional_details_left_out_on_the_wire(
    world, audit_log
):
    context = RequestContext(
        principal=Principal(execution_id="exec-alice-1", user_id="alice"),
        request_id="req-a9",
        client_address=None,
    )

    await set_condition(world, context, "exec-alice-1")

    [event] = audit_log.events
    assert json.loads(encode_event(event))["details"] == {
        "userId": "alice",
        "eventId": None,
        "jobId": None,
        "requestId": "req-a9",
        "clientAddress": None,
        "outcome": "ok",
    }


async def test_the_wire_form_carries_the_hmac_of_the_values_canonical_json(world, audit_log, alice):
    value = {"zähler": 3, "b": [1, None, "ß"], "a": {"y": True, "x": "🔑"}}
    key = b"a known audit key"
    audit = AuditRecorder(log=audit_log, clock=world.clock, key=key)

    await SetVariable(variables=world.variables, clock=world.clock, audit=audit).execute(
        SetVariableCommand(context=alice, execution_id="exec-alice-1", key=KEY, value=value)
    )

    # Keys sorted at every level, no spaces, non-ASCII kept as UTF-8 (SPEC section 9).
    canonical = '{"a":{"x":"🔑","y":true},"b":[1,null,"ß"],"zähler":3}'.encode()
    expected = hmac.new(key, canonical, hashlib.sha256).hexdigest()
    [event] = audit_log.events
    assert json.loads(encode_event(event))["details"]["valueHmac"] == f"hmac-sha256:{expected}"


async def test_event_timestamps_are_cut_to_the_wires_milliseconds(world, audit_log, clock, alice):
    clock.moment = clock.moment.replace(microsecond=123999)

    await get_input(world, alice, "exec-alice-1")

    [event] = audit_log.events
    assert event.timestamp == clock.moment.replace(microsecond=123000)
    assert decode_event(encode_event(event)) == event


async def test_every_event_has_its_own_id(world, audit_log, alice):
    await get_input(world, alice, "exec-alice-1")
    await get_input(world, alice, "exec-alice-1")

    first, second = audit_log.events
    assert first.id != second.id


# Operations that fail


@every(EXECUTION_OPERATIONS)
async def test_an_operation_on_another_execution_is_recorded_as_a_mismatch(
    world, audit_log, alice, operation
):
    with pytest.raises(ExecutionMismatchError):
        await operation.run(world, alice, "exec-bob-1")

    [event] = audit_log.events
    assert event.action == operation.action
    assert event.details.outcome == "EXECUTION_MISMATCH"
    assert event.details.user_id == "alice"


@every(EXECUTION_OPERATIONS)
async def test_an_operation_refused_for_another_execution_records_no_value_hmac(
    world, audit_log, alice, operation
):
    with pytest.raises(ExecutionMismatchError):
        await operation.run(world, alice, "exec-bob-1")

    [event] = audit_log.events
    assert event.details.value_hmac is None


@pytest.mark.parametrize("name", SYSTEM_OF_RECORD_OPERATIONS)
async def test_an_operation_on_an_unknown_execution_is_recorded_as_not_found(
    world, audit_log, stranger, name
):
    with pytest.raises(DomainError):
        await OPERATIONS[name].run(world, stranger, "exec-unknown")

    [event] = audit_log.events
    assert event.execution_id == "exec-unknown"
    assert event.details.outcome == "EXECUTION_NOT_FOUND"


@pytest.mark.parametrize("name", ["get_variable", "delete_variable"])
async def test_an_operation_on_a_missing_variable_is_recorded_as_not_found(
    world, variables, audit_log, alice, name
):
    await variables.delete("alice", KEY)

    with pytest.raises(DomainError):
        await OPERATIONS[name].run(world, alice, "exec-alice-1")

    [event] = audit_log.events
    assert event.details.outcome == "VARIABLE_NOT_FOUND"
    assert event.details.key == KEY
    assert event.details.value_hmac is None


BAD_KEY = "../x"
BAD_KEY_RUNS: dict[str, Callable[[World, RequestContext], Awaitable[Any]]] = {
    "get_variable": lambda w, context: GetVariable(variables=w.variables, audit=w.audit).execute(
        GetVariableCommand(context=context, execution_id="exec-alice-1", key=BAD_KEY)
    ),
    "set_variable": lambda w, context: SetVariable(
        variables=w.variables, clock=w.clock, audit=w.audit
    ).execute(
        SetVariableCommand(
            context=context, execution_id="exec-alice-1", key=BAD_KEY, value=RAW_WRITTEN
        )
    ),
    "delete_variable": lambda w, context: DeleteVariable(
        variables=w.variables, audit=w.audit
    ).execute(DeleteVariableCommand(context=context, execution_id="exec-alice-1", key=BAD_KEY)),
}


@pytest.mark.parametrize("run", BAD_KEY_RUNS.values(), ids=BAD_KEY_RUNS.keys())
async def test_an_invalid_key_is_recorded_as_invalid_without_a_value_hmac(
    world, audit_log, alice, run
):
    with pytest.raises(DomainError):
        await run(world, alice)

    [event] = audit_log.events
    assert event.details.outcome == "INVALID_KEY"
    assert event.details.key == BAD_KEY
    assert event.details.value_hmac is None


async def test_a_tool_action_without_a_tool_is_recorded_as_an_invalid_body(world, audit_log, alice):
    use_case = RunToolAction(tools=world.tools, audit=world.audit)

    with pytest.raises(DomainError):
        await use_case.execute(
            RunToolActionCommand(context=alice, tool="", action="send", params=RAW_PARAMS)
        )

    [event] = audit_log.events
    assert event.details.outcome == "INVALID_BODY"
    assert (event.details.tool, event.details.tool_action) == ("", "send")
    assert event.details.value_hmac is None


async def test_an_unknown_tool_is_recorded_as_not_found(world, tools, audit_log, alice):
    tools.error = ToolNotFoundError("slack", "send_message")

    with pytest.raises(ToolNotFoundError):
        await run_tool_action(world, alice, "exec-alice-1")

    [event] = audit_log.events
    assert event.details.outcome == "TOOL_NOT_FOUND"


@pytest.mark.parametrize("code", ["TOOL_FAILED", "TOOL_OUTCOME_UNKNOWN"])
async def test_a_tool_that_answered_failure_is_recorded_with_its_code(
    world, audit_log, alice, fingerprint, code
):
    world.tools.result = ToolResult(success=False, error="the webhook answered 504", code=code)

    result = await run_tool_action(world, alice, "exec-alice-1")

    assert result.success is False
    [event] = audit_log.events
    assert event.details.outcome == code
    assert event.details.value_hmac == fingerprint(RAW_PARAMS)


async def test_a_tool_that_answered_failure_without_a_code_is_recorded_as_tool_failed(
    world, audit_log, alice
):
    world.tools.result = ToolResult(success=False, error="the webhook answered 400")

    await run_tool_action(world, alice, "exec-alice-1")

    [event] = audit_log.events
    assert event.details.outcome == "TOOL_FAILED"


@every(OPERATIONS)
async def test_an_unexpected_failure_is_recorded_as_internal_and_still_raised(
    broken_world, audit_log, alice, operation
):
    with pytest.raises(RuntimeError, match="on fire"):
        await operation.run(broken_world, alice, "exec-alice-1")

    [event] = audit_log.events
    assert event.action == operation.action
    assert event.details.outcome == "INTERNAL"


@every(OPERATIONS)
async def test_an_audit_trail_that_cannot_be_written_fails_the_operation(
    world, failing_audit, alice, operation
):
    world.audit = failing_audit

    with pytest.raises(AuditUnavailableError):
        await operation.run(world, alice, "exec-alice-1")


async def test_a_cancelled_operation_is_recorded_as_cancelled(
    blocking_variables, audit, audit_log, alice
):
    use_case = GetVariable(variables=blocking_variables, audit=audit)
    task = asyncio.create_task(
        use_case.execute(GetVariableCommand(context=alice, execution_id="exec-alice-1", key=KEY))
    )
    await blocking_variables.reading.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [event] = audit_log.events
    assert event.action == AuditAction.GET_VARIABLE
    assert event.details.outcome == "CANCELLED"
