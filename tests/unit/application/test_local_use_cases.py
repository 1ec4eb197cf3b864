"""CreateExecution and ReportExecution: the embedded system of record's own use cases.

ReportExecution is driven through the real use cases (GetVariable, SetVariable, ...) over the
in-memory adapters, so that what it reports is what an execution really did.
"""

from __future__ import annotations

import pytest

from adapters.memory.audit import InMemoryAuditLog
from adapters.memory.executions import InMemoryExecutionRepository
from adapters.memory.tool_calls import InMemoryToolCallLog
from adapters.memory.variables import InMemoryVariableRepository
from adapters.tools.logged import LoggedToolGateway
from application.audit import AuditRecorder
from application.create_execution import CreateExecution, CreateExecutionCommand
from application.delete_variable import DeleteVariable, DeleteVariableCommand
from application.get_variable import GetVariable, GetVariableCommand
from application.ports import ToolGateway
from application.report_execution import ReportExecution, ReportExecutionCommand
from application.run_tool_action import RunToolAction, RunToolActionCommand
from application.set_condition import SetCondition, SetConditionCommand
from application.set_output import SetOutput, SetOutputCommand
from application.set_variable import SetVariable, SetVariableCommand
from domain.errors import (
    ExecutionMismatchError,
    ExecutionNotFoundError,
    InvalidKeyError,
    VariableNotFoundError,
)
from domain.model import (
    ExecutionOutcome,
    RequestContext,
    ToolCall,
    ToolCallRecord,
    ToolResult,
    WrittenVariable,
)

# --- CreateExecution --------------------------------------------------------------------------


@pytest.fixture
def catalog(clock) -> InMemoryExecutionRepository:
    return InMemoryExecutionRepository(clock=clock)


@pytest.fixture
def create(catalog, clock) -> CreateExecution:
    return CreateExecution(catalog=catalog, clock=clock)


async def test_a_new_execution_gets_fresh_ids_with_their_prefixes(create):
    first = await create.execute(CreateExecutionCommand(user_id="local"))
    second = await create.execute(CreateExecutionCommand(user_id="local"))

    for context in (first, second):
        assert context.execution_id.startswith("exec-")
        assert context.event_id is not None
        assert context.event_id.startswith("event-")
        assert context.job_id is not None
        assert context.job_id.startswith("job-")
    assert first.execution_id != second.execution_id
    assert first.event_id != second.event_id
    assert first.job_id != second.job_id


async def test_many_new_executions_never_share_an_id(create):
    contexts = [await create.execute(CreateExecutionCommand(user_id="local")) for _ in range(50)]

    assert len({context.execution_id for context in contexts}) == 50
    assert len({context.event_id for context in contexts}) == 50
    assert len({context.job_id for context in contexts}) == 50


async def test_a_new_execution_is_kept_in_the_catalog_as_it_was_returned(create, catalog):
    created = await create.execute(CreateExecutionCommand(user_id="local", input={"a": 1}))

    stored = await catalog.get_context(created.execution_id)

    assert stored == created


async def test_the_input_is_kept_in_the_metadata_where_the_backend_keeps_it(create):
    context = await create.execute(
        CreateExecutionCommand(user_id="local", input={"name": "world", "n": [1, 2]})
    )

    assert context.metadata == {"input": {"name": "world", "n": [1, 2]}}
    assert context.input == {"name": "world", "n": [1, 2]}


@pytest.mark.parametrize("falsy_input", [0, False, "", [], {}])
async def test_a_falsy_input_is_still_an_input(create, falsy_input):
    context = await create.execute(CreateExecutionCommand(user_id="local", input=falsy_input))

    assert context.metadata == {"input": falsy_input}


async def test_without_an_input_the_metadata_has_no_input_key(create):
    context = await create.execute(CreateExecutionCommand(user_id="local"))

    assert context.metadata == {}
    assert context.input is None


async def test_the_event_is_named_local_of_type_script_by_default(create):
    context = await create.execute(CreateExecutionCommand(user_id="local"))

    assert context.event == {"id": context.event_id, "name": "local", "type": "SCRIPT"}


async def test_the_event_name_and_type_can_be_chosen(create):
    context = await create.execute(
        CreateExecutionCommand(user_id="local", event_name="hello", event_type="HTTP_REQUEST")
    )

    assert context.event == {"id": context.event_id, "name": "hello", "type": "HTTP_REQUEST"}


async def test_the_execution_belongs_to_the_commands_user(create):
    context = await create.execute(CreateExecutionCommand(user_id="alice"))

    assert context.user_id == "alice"
    assert context.user == {"id": "alice"}


async def test_the_start_time_is_the_clocks_time_of_creation(create, catalog, clock):
    created_at = clock.moment
    context = await create.execute(CreateExecutionCommand(user_id="local"))
    clock.advance(60)

    stored = await catalog.get_context(context.execution_id)

    assert context.start_time == created_at
    assert stored.start_time == created_at


# --- ReportExecution --------------------------------------------------------------------------


class EchoToolGateway(ToolGateway):
    """Answers each call with what it was asked, so results can be told apart."""

    async def execute(self, call: ToolCall) -> ToolResult:
        if call.action == "fail":
            return ToolResult(success=False, error="refused", code="TOOL_REFUSED")
        return ToolResult(success=True, data={"echo": call.action, "params": call.params})


class Run:
    """One execution's token driving the real use cases over the in-memory adapters."""

    def __init__(self, world: World, context: RequestContext) -> None:
        self.world = world
        self.context = context
        self.execution_id = context.principal.execution_id

    async def get(self, key: str, *, execution_id: str | None = None) -> object:
        command = GetVariableCommand(
            context=self.context, execution_id=execution_id or self.execution_id, key=key
        )
        return (await self.world.get_variable.execute(command)).value

    async def set(self, key: str, value: object, *, execution_id: str | None = None) -> None:
        await self.world.set_variable.execute(
            SetVariableCommand(
                context=self.context,
                execution_id=execution_id or self.execution_id,
                key=key,
                value=value,
            )
        )

    async def delete(self, key: str) -> None:
        await self.world.delete_variable.execute(
            DeleteVariableCommand(context=self.context, execution_id=self.execution_id, key=key)
        )

    async def output(self, value: object) -> None:
        await self.world.set_output.execute(
            SetOutputCommand(context=self.context, execution_id=self.execution_id, output=value)
        )

    async def condition(self, value: bool) -> None:
        await self.world.set_condition.execute(
            SetConditionCommand(
                context=self.context, execution_id=self.execution_id, condition=value
            )
        )

    async def tool(self, tool: str, action: str, params: dict) -> ToolResult:
        return await self.world.run_tool_action.execute(
            RunToolActionCommand(context=self.context, tool=tool, action=action, params=params)
        )


class World:
    def __init__(
        self,
        *,
        executions: InMemoryExecutionRepository,
        variables: InMemoryVariableRepository,
        audit_log: InMemoryAuditLog,
        audit: AuditRecorder,
        clock,
    ) -> None:
        self.executions = executions
        self.variables = variables
        self.audit_log = audit_log
        self.clock = clock
        self.tool_calls = InMemoryToolCallLog()
        self.get_variable = GetVariable(variables=variables, audit=audit)
        self.set_variable = SetVariable(variables=variables, clock=clock, audit=audit)
        self.delete_variable = DeleteVariable(variables=variables, audit=audit)
        self.set_output = SetOutput(executions=executions, clock=clock, audit=audit)
        self.set_condition = SetCondition(executions=executions, clock=clock, audit=audit)
        tools = LoggedToolGateway(inner=EchoToolGateway(), log=self.tool_calls, clock=clock)
        self.run_tool_action = RunToolAction(tools=tools, audit=audit)
        self.report = ReportExecution(
            catalog=executions, variables=variables, tool_calls=self.tool_calls, audit=audit_log
        )

    def run(self, context: RequestContext) -> Run:
        return Run(self, context)

    async def report_of(self, run: Run):
        return await self.report.execute(
            ReportExecutionCommand(
                execution_id=run.execution_id, user_id=run.context.principal.user_id
            )
        )


@pytest.fixture
def world(executions, variables, audit_log, audit, clock) -> World:
    return World(
        executions=executions, variables=variables, audit_log=audit_log, audit=audit, clock=clock
    )


@pytest.fixture
def run_a(world, alice) -> Run:
    return world.run(alice)


@pytest.fixture
def run_b(world, alice_next_run) -> Run:
    """Another execution of the same user, sharing the user's variables."""
    return world.run(alice_next_run)


async def test_an_execution_that_did_nothing_reports_nothing(world, run_a):
    report = await world.report_of(run_a)

    assert report.outcome == ExecutionOutcome(execution_id="exec-alice-1", has_output=False)
    assert report.variables_read == []
    assert report.variables_written == {}
    assert report.tool_calls == []
    assert report.audit_events == 0


async def test_variables_read_are_listed_once_each_in_first_read_order(world, run_a, run_b):
    await run_b.set("beta", 2)
    await run_b.set("alpha", 1)
    await run_a.get("beta")
    with pytest.raises(VariableNotFoundError):
        await run_a.get("missing")
    await run_a.get("alpha")
    await run_a.get("beta")
    with pytest.raises(VariableNotFoundError):
        await run_a.get("missing")

    report = await world.report_of(run_a)

    assert report.variables_read == ["beta", "missing", "alpha"]


async def test_reads_that_were_refused_are_not_variables_read(world, run_a, run_b):
    await run_b.set("theirs", 1)
    with pytest.raises(ExecutionMismatchError):
        await run_a.get("theirs", execution_id="exec-alice-2")
    with pytest.raises(InvalidKeyError):
        await run_a.get("a/../b")
    await run_a.get("theirs")

    report = await world.report_of(run_a)

    assert report.variables_read == ["theirs"]
    # The refused reads were operations all the same, and audited as such.
    assert report.audit_events == 3


async def test_another_executions_reads_are_not_this_executions(world, run_a, run_b):
    await run_a.set("shared", 1)
    await run_b.get("shared")

    report = await world.report_of(run_a)

    assert report.variables_read == []
    assert (await world.report_of(run_b)).variables_read == ["shared"]


async def test_variables_written_carry_their_current_value(world, run_a):
    await run_a.set("counter", 1)
    await run_a.set("counter", 2)
    await run_a.set("greeting", "hello, wörld")
    await run_a.set("nothing", None)

    report = await world.report_of(run_a)

    assert report.variables_written == {
        "counter": WrittenVariable(exists=True, value=2),
        "greeting": WrittenVariable(exists=True, value="hello, wörld"),
        "nothing": WrittenVariable(exists=True, value=None),
    }
    assert list(report.variables_written) == ["counter", "greeting", "nothing"]


async def test_a_variable_the_execution_deleted_is_written_and_no_longer_exists(
    world, run_a, run_b
):
    await run_b.set("old", {"from": "an earlier run"})
    await run_a.delete("old")

    report = await world.report_of(run_a)

    assert report.variables_written == {"old": WrittenVariable(exists=False)}


async def test_a_variable_written_then_deleted_no_longer_exists(world, run_a):
    await run_a.set("scratch", [1, 2, 3])
    await run_a.delete("scratch")

    report = await world.report_of(run_a)

    assert report.variables_written == {"scratch": WrittenVariable(exists=False)}


async def test_writes_that_failed_are_not_variables_written(world, run_a):
    with pytest.raises(VariableNotFoundError):
        await run_a.delete("never-set")
    with pytest.raises(ExecutionMismatchError):
        await run_a.set("elsewhere", 1, execution_id="exec-alice-2")
    with pytest.raises(InvalidKeyError):
        await run_a.set("x" * 256, 1)

    report = await world.report_of(run_a)

    assert report.variables_written == {}
    assert report.audit_events == 3


async def test_writes_by_another_execution_of_the_same_user_are_not_counted(world, run_a, run_b):
    await run_a.set("mine", 1)
    await run_b.set("theirs", 2)
    await run_b.delete("mine")

    report_a = await world.report_of(run_a)
    report_b = await world.report_of(run_b)

    # `mine` is this execution's write, shown as it stands now: deleted by the other run.
    assert report_a.variables_written == {"mine": WrittenVariable(exists=False)}
    assert report_b.variables_written == {
        "theirs": WrittenVariable(exists=True, value=2),
        "mine": WrittenVariable(exists=False),
    }


async def test_a_written_variable_shows_a_later_write_by_another_execution(world, run_a, run_b):
    await run_a.set("counter", 1)
    await run_b.set("counter", 5)

    report = await world.report_of(run_a)

    assert report.variables_written == {"counter": WrittenVariable(exists=True, value=5)}


async def test_writes_of_another_user_are_not_read_back_as_this_users(world, run_a, bob):
    await run_a.set("counter", 1)
    await world.run(bob).set("counter", 99)

    report = await world.report_of(run_a)

    assert report.variables_written == {"counter": WrittenVariable(exists=True, value=1)}


async def test_an_output_that_was_set_is_reported_with_its_value(world, run_a):
    await run_a.output({"greeting": "hello"})
    await run_a.output({"greeting": "hello, world"})

    report = await world.report_of(run_a)

    assert report.outcome.has_output is True
    assert report.outcome.output == {"greeting": "hello, world"}


async def test_an_output_that_was_never_set_is_not_an_output_of_null(world, run_a):
    report = await world.report_of(run_a)

    assert report.outcome.has_output is False
    assert report.outcome.output is None


async def test_an_output_set_to_null_is_an_output(world, run_a):
    await run_a.output(None)

    report = await world.report_of(run_a)

    assert report.outcome.has_output is True
    assert report.outcome.output is None


@pytest.mark.parametrize("condition", [True, False])
async def test_the_condition_is_reported(world, run_a, condition):
    await run_a.condition(condition)

    report = await world.report_of(run_a)

    assert report.outcome.condition is condition


async def test_a_condition_never_set_is_none(world, run_a):
    await run_a.output(1)

    report = await world.report_of(run_a)

    assert report.outcome.condition is None


async def test_another_executions_output_and_condition_are_not_this_executions(world, run_a, run_b):
    await run_b.output("theirs")
    await run_b.condition(True)

    report = await world.report_of(run_a)

    assert report.outcome == ExecutionOutcome(execution_id="exec-alice-1")


async def test_tool_calls_are_reported_with_their_results_oldest_first(world, run_a, run_b, clock):
    first_at = clock.moment
    await run_a.tool("slack", "send", {"text": "one"})
    await run_b.tool("slack", "send", {"text": "not mine"})
    second_at = clock.advance(1.5)
    await run_a.tool("email", "fail", {"to": "a@example.test"})

    report = await world.report_of(run_a)

    assert [(r.call.tool, r.call.action, r.call.params) for r in report.tool_calls] == [
        ("slack", "send", {"text": "one"}),
        ("email", "fail", {"to": "a@example.test"}),
    ]
    assert report.tool_calls[0].result == ToolResult(
        success=True, data={"echo": "send", "params": {"text": "one"}}
    )
    # A tool that answered `success: false` answered: the call is kept with its answer.
    assert report.tool_calls[1].result == ToolResult(
        success=False, error="refused", code="TOOL_REFUSED"
    )
    assert [r.at for r in report.tool_calls] == [first_at, second_at]
    assert all(r.call.execution_id == "exec-alice-1" for r in report.tool_calls)
    assert all(isinstance(r, ToolCallRecord) for r in report.tool_calls)


async def test_the_audit_count_is_the_number_of_the_executions_operations(world, run_a, run_b):
    await run_a.set("counter", 1)  # 1
    await run_a.get("counter")  # 2
    with pytest.raises(VariableNotFoundError):
        await run_a.get("missing")  # 3
    await run_a.delete("counter")  # 4
    await run_a.output({"done": True})  # 5
    await run_a.condition(False)  # 6
    await run_a.tool("webhook", "post", {})  # 7
    with pytest.raises(ExecutionMismatchError):
        await run_a.get("counter", execution_id="exec-alice-2")  # 8
    await run_b.set("other", 1)  # another execution's: not counted

    report = await world.report_of(run_a)

    assert report.audit_events == 8
    assert report.audit_events == len(await world.audit_log.events_of("exec-alice-1"))


async def test_a_whole_run_is_reported_as_it_happened(world, run_a, run_b, clock):
    await run_b.set("counter", {"count": 0})
    before = await run_a.get("counter")
    await run_a.set("counter", {"count": before["count"] + 1})  # type: ignore[index]
    await run_a.set("tmp", True)
    await run_a.delete("tmp")
    await run_a.output({"greeting": "hello, world"})
    await run_a.condition(True)
    clock.advance(1)
    await run_a.tool("log", "note", {"text": "hello"})

    report = await world.report_of(run_a)

    assert report.outcome == ExecutionOutcome(
        execution_id="exec-alice-1",
        has_output=True,
        output={"greeting": "hello, world"},
        condition=True,
    )
    assert report.variables_read == ["counter"]
    assert report.variables_written == {
        "counter": WrittenVariable(exists=True, value={"count": 1}),
        "tmp": WrittenVariable(exists=False),
    }
    assert [(r.call.tool, r.call.action) for r in report.tool_calls] == [("log", "note")]
    assert report.audit_events == 7


async def test_reporting_an_unknown_execution_raises_not_found(world):
    with pytest.raises(ExecutionNotFoundError) as missing:
        await world.report.execute(
            ReportExecutionCommand(execution_id="exec-nobody", user_id="alice")
        )

    assert missing.value.execution_id == "exec-nobody"


@pytest.mark.parametrize("audit", ["fail_closed"], indirect=True)
async def test_an_intent_is_not_counted_as_an_event_of_its_own(world, run_a):
    # Under audit.failClosed a write is announced by an intent, then recorded by its outcome:
    # the report counts operations, as it does without failClosed.
    await run_a.set("counter", 1)
    await run_a.get("counter")
    await run_a.output({"done": True})

    report = await world.report_of(run_a)

    assert report.audit_events == 3
    assert len(await world.audit_log.events_of("exec-alice-1")) == 5
