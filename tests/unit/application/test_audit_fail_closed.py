"""`audit.failClosed` (SPEC section 9): a state-changing operation first persists an intent in
the outbox; when the outbox refuses it, nothing is performed and the answer is
AUDIT_UNAVAILABLE. Without it, the operation goes ahead and its one event is spooled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.memory.audit import InMemoryAuditLog
from application.audit import AuditRecorder
from application.delete_variable import DeleteVariable, DeleteVariableCommand
from application.get_input import GetInput, GetInputCommand
from application.get_variable import GetVariable, GetVariableCommand
from application.list_variables import ListVariables, ListVariablesCommand
from application.run_tool_action import RunToolAction, RunToolActionCommand
from application.set_condition import SetCondition, SetConditionCommand
from application.set_output import SetOutput, SetOutputCommand
from application.set_variable import SetVariable, SetVariableCommand
from domain.audit import OUTCOME_PENDING, AuditAction
from domain.errors import AuditUnavailableError, ExecutionMismatchError, ToolNotFoundError
from domain.model import RequestContext

AUDIT_KEY = b"fail-closed-test-key"
KEY = "greeting"
STORED = "stored before"
WRITTEN = {"written": "by the operation"}


@dataclass
class World:
    executions: Any
    variables: Any
    tools: Any
    clock: Any
    log: InMemoryAuditLog
    audit: AuditRecorder

    async def performed(self) -> dict[str, bool]:
        """Which state changes happened, whatever the operation."""
        variable = await self.variables.get("alice", KEY)
        return {
            "set_output": "exec-alice-1" in self.executions.outputs,
            "set_condition": "exec-alice-1" in self.executions.conditions,
            "set_variable": variable is not None and variable.value == WRITTEN,
            "delete_variable": variable is None,
            "execute_tool_action": bool(self.tools.calls),
        }


Run = Callable[[World, RequestContext], Awaitable[Any]]


def set_output(w: World, context: RequestContext) -> Awaitable[Any]:
    return SetOutput(executions=w.executions, clock=w.clock, audit=w.audit).execute(
        SetOutputCommand(context=context, execution_id="exec-alice-1", output=WRITTEN)
    )


def set_condition(w: World, context: RequestContext) -> Awaitable[Any]:
    return SetCondition(executions=w.executions, clock=w.clock, audit=w.audit).execute(
        SetConditionCommand(context=context, execution_id="exec-alice-1", condition=True)
    )


def set_variable(w: World, context: RequestContext) -> Awaitable[Any]:
    return SetVariable(variables=w.variables, clock=w.clock, audit=w.audit).execute(
        SetVariableCommand(context=context, execution_id="exec-alice-1", key=KEY, value=WRITTEN)
    )


def delete_variable(w: World, context: RequestContext) -> Awaitable[Any]:
    return DeleteVariable(variables=w.variables, audit=w.audit).execute(
        DeleteVariableCommand(context=context, execution_id="exec-alice-1", key=KEY)
    )


def execute_tool_action(w: World, context: RequestContext) -> Awaitable[Any]:
    return RunToolAction(tools=w.tools, audit=w.audit).execute(
        RunToolActionCommand(context=context, tool="slack", action="send", params={"text": "hi"})
    )


def get_input(w: World, context: RequestContext) -> Awaitable[Any]:
    return GetInput(executions=w.executions, audit=w.audit).execute(
        GetInputCommand(context=context, execution_id="exec-alice-1")
    )


def get_variable(w: World, context: RequestContext) -> Awaitable[Any]:
    return GetVariable(variables=w.variables, audit=w.audit).execute(
        GetVariableCommand(context=context, execution_id="exec-alice-1", key=KEY)
    )


def list_variables(w: World, context: RequestContext) -> Awaitable[Any]:
    return ListVariables(variables=w.variables, audit=w.audit).execute(
        ListVariablesCommand(context=context, execution_id="exec-alice-1")
    )


WRITES: dict[str, Run] = {
    "set_output": set_output,
    "set_condition": set_condition,
    "set_variable": set_variable,
    "delete_variable": delete_variable,
    "execute_tool_action": execute_tool_action,
}
READS: dict[str, Run] = {
    "get_input": get_input,
    "get_variable": get_variable,
    "list_variables": list_variables,
}
EXECUTION_WRITES = [name for name in WRITES if name != "execute_tool_action"]
every_write = pytest.mark.parametrize("name", WRITES)
every_read = pytest.mark.parametrize("name", READS)


def make_world(executions, variables, tools, clock, *, fail_closed: bool) -> World:
    log = InMemoryAuditLog()
    audit = AuditRecorder(log=log, clock=clock, key=AUDIT_KEY, fail_closed=fail_closed)
    return World(executions, variables, tools, clock, log, audit)


@pytest.fixture
async def closed(executions, variables, tools, clock) -> World:
    """Alice's run under `audit.failClosed`, with a variable of hers already stored."""
    await variables.put("alice", KEY, STORED, clock.now())
    return make_world(executions, variables, tools, clock, fail_closed=True)


@pytest.fixture
async def open_(executions, variables, tools, clock) -> World:
    """The same run without `audit.failClosed`."""
    await variables.put("alice", KEY, STORED, clock.now())
    return make_world(executions, variables, tools, clock, fail_closed=False)


# Under failClosed, the outbox taking events


@every_write
async def test_a_write_persists_a_pending_intent_then_an_outcome_naming_it(closed, alice, name):
    await WRITES[name](closed, alice)

    intent, outcome = closed.log.events
    assert intent.action == outcome.action == AuditAction(name)
    assert intent.details.outcome == OUTCOME_PENDING
    assert outcome.details.outcome == "ok"
    assert outcome.details.intent_id == intent.id
    assert intent.id != outcome.id
    assert intent.details.intent_id is None
    assert (intent.details.user_id, intent.details.request_id) == ("alice", "req-a1")
    assert (intent.details.key, intent.details.tool) == (outcome.details.key, outcome.details.tool)
    assert (await closed.performed())[name] is True


@every_write
async def test_the_intent_carries_no_value_only_the_outcome_does(closed, alice, name):
    await WRITES[name](closed, alice)

    intent, _ = closed.log.events
    assert intent.details.value_hmac is None


@pytest.mark.parametrize("name", EXECUTION_WRITES)
async def test_a_write_that_fails_names_its_intent_in_the_failed_outcome(closed, bob, name):
    with pytest.raises(ExecutionMismatchError):
        await WRITES[name](closed, bob)

    intent, outcome = closed.log.events
    assert (intent.details.outcome, outcome.details.outcome) == ("pending", "EXECUTION_MISMATCH")
    assert outcome.details.intent_id == intent.id


async def test_a_tool_action_that_is_not_found_names_its_intent_in_the_outcome(
    closed, tools, alice
):
    tools.error = ToolNotFoundError("slack", "send")

    with pytest.raises(ToolNotFoundError):
        await execute_tool_action(closed, alice)

    intent, outcome = closed.log.events
    assert (intent.details.outcome, outcome.details.outcome) == ("pending", "TOOL_NOT_FOUND")
    assert outcome.details.intent_id == intent.id


@every_read
async def test_a_read_records_one_event_and_no_intent(closed, alice, name):
    await READS[name](closed, alice)

    [event] = closed.log.events
    assert event.details.outcome == "ok"
    assert event.details.intent_id is None


# Under failClosed, the outbox refusing


@every_write
async def test_a_write_the_outbox_cannot_announce_is_refused_and_not_performed(closed, alice, name):
    closed.log.outbox_refuses = True
    before = await closed.performed()

    with pytest.raises(AuditUnavailableError):
        await WRITES[name](closed, alice)

    assert await closed.performed() == before
    assert (await closed.performed())[name] is False
    assert (closed.log.events, closed.log.spooled) == ([], [])


@every_write
async def test_a_refused_write_is_allowed_again_once_the_outbox_takes_events(closed, alice, name):
    closed.log.outbox_refuses = True
    with pytest.raises(AuditUnavailableError):
        await WRITES[name](closed, alice)

    closed.log.outbox_refuses = False
    await WRITES[name](closed, alice)

    assert (await closed.performed())[name] is True
    assert [event.details.outcome for event in closed.log.events] == ["pending", "ok"]


@every_read
async def test_a_read_goes_ahead_and_its_event_is_spooled(closed, alice, name):
    closed.log.outbox_refuses = True

    await READS[name](closed, alice)

    assert closed.log.events == []
    [event] = closed.log.spooled
    assert event.details.outcome == "ok"


# Without failClosed


@every_write
async def test_without_fail_closed_a_write_records_one_event_and_no_intent(open_, alice, name):
    await WRITES[name](open_, alice)

    [event] = open_.log.events
    assert (event.action, event.details.outcome) == (AuditAction(name), "ok")
    assert event.details.intent_id is None


@every_write
async def test_without_fail_closed_a_write_goes_ahead_and_its_event_is_spooled(open_, alice, name):
    open_.log.outbox_refuses = True

    await WRITES[name](open_, alice)

    assert (await open_.performed())[name] is True
    assert open_.log.events == []
    [event] = open_.log.spooled
    assert event.details.outcome == "ok"
