"""The script API of SPEC section 4. Handlers translate between the wire and a use case."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, JSONBody

from application.delete_variable import DeleteVariable, DeleteVariableCommand
from application.get_context import GetContext, GetContextCommand
from application.get_input import GetInput, GetInputCommand
from application.get_variable import GetVariable, GetVariableCommand
from application.list_variables import ListVariables, ListVariablesCommand
from application.run_tool_action import RunToolAction, RunToolActionCommand
from application.set_condition import SetCondition, SetConditionCommand
from application.set_output import SetOutput, SetOutputCommand
from application.set_variable import SetVariable, SetVariableCommand
from domain.errors import InvalidKeyError
from domain.model import RequestContext
from entrypoints.http.schemas import (
    Ack,
    ConditionBody,
    ContextOut,
    Envelope,
    OutputBody,
    ToolActionBody,
    ToolResultOut,
    VariableBody,
    VariableOut,
    VariableSummaryOut,
)

ExecutionId = Annotated[str, FromPath]


def variable_key(request: Request[Any, Any, Any], key: FromPath[str] = "") -> str:
    """The key as the client encoded it, decoded exactly once.

    Taken from the raw path: the ASGI server has decoded `%2F` into a slash and Litestar
    then collapses and trims slashes, which would turn `a%2F` and `%2Fa` into `a`. The
    route's `{key:path}` (handed over with a leading slash) is the fallback for servers
    that give no raw path.
    """
    raw_path: bytes | None = request.scope.get("raw_path")
    if raw_path is None:
        return key[1:] if key.startswith("/") else key
    # /executions/{id}/variables/{key}: the key is whatever follows the fourth slash, and
    # nothing on the routes without one.
    segments = raw_path.split(b"?", 1)[0].split(b"/", 4)
    raw_key = segments[4] if len(segments) == 5 else b""
    try:
        return unquote_to_bytes(raw_key).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyError("the variable key is not UTF-8 once URL-decoded") from None


class ExecutionController(Controller):
    path = "/executions/{execution_id:str}"
    tags = ["executions"]
    security = [{"bearer": []}]

    @get("/input", summary="The execution's input")
    async def get_input(
        self,
        execution_id: ExecutionId,
        context: NamedDependency[RequestContext],
        get_input: NamedDependency[GetInput],
    ) -> Envelope[Any]:
        command = GetInputCommand(context=context, execution_id=execution_id)
        return Envelope(data=await get_input.execute(command))

    @post("/output", status_code=200, summary="Set the execution's output")
    async def set_output(
        self,
        execution_id: ExecutionId,
        data: JSONBody[OutputBody],
        context: NamedDependency[RequestContext],
        set_output: NamedDependency[SetOutput],
    ) -> Ack:
        command = SetOutputCommand(context=context, execution_id=execution_id, output=data.data)
        await set_output.execute(command)
        return Ack()

    @get("/variables", summary="The user's variables: keys and write times")
    async def list_variables(
        self,
        execution_id: ExecutionId,
        context: NamedDependency[RequestContext],
        list_variables: NamedDependency[ListVariables],
    ) -> Envelope[list[VariableSummaryOut]]:
        command = ListVariablesCommand(context=context, execution_id=execution_id)
        summaries = await list_variables.execute(command)
        return Envelope(data=[VariableSummaryOut.of(summary) for summary in summaries])

    @get("/variables/{key:path}", summary="Read a variable")
    async def get_variable(
        self,
        execution_id: ExecutionId,
        variable_key: NamedDependency[str],
        context: NamedDependency[RequestContext],
        get_variable: NamedDependency[GetVariable],
    ) -> Envelope[VariableOut]:
        command = GetVariableCommand(context=context, execution_id=execution_id, key=variable_key)
        return Envelope(data=VariableOut.of(await get_variable.execute(command)))

    # Also on `/variables`, so that an empty key is 400 INVALID_KEY rather than a 405.
    @put(["/variables/{key:path}", "/variables"], summary="Write a variable")
    async def set_variable(
        self,
        execution_id: ExecutionId,
        variable_key: NamedDependency[str],
        data: JSONBody[VariableBody],
        context: NamedDependency[RequestContext],
        set_variable: NamedDependency[SetVariable],
    ) -> Envelope[VariableOut]:
        command = SetVariableCommand(
            context=context, execution_id=execution_id, key=variable_key, value=data.value
        )
        return Envelope(data=VariableOut.of(await set_variable.execute(command)))

    @delete(["/variables/{key:path}", "/variables"], status_code=200, summary="Delete a variable")
    async def delete_variable(
        self,
        execution_id: ExecutionId,
        variable_key: NamedDependency[str],
        context: NamedDependency[RequestContext],
        delete_variable: NamedDependency[DeleteVariable],
    ) -> Ack:
        command = DeleteVariableCommand(
            context=context, execution_id=execution_id, key=variable_key
        )
        await delete_variable.execute(command)
        return Ack()

    @post("/condition", status_code=200, summary="Set the workflow condition")
    async def set_condition(
        self,
        execution_id: ExecutionId,
        data: JSONBody[ConditionBody],
        context: NamedDependency[RequestContext],
        set_condition: NamedDependency[SetCondition],
    ) -> Ack:
        command = SetConditionCommand(
            context=context, execution_id=execution_id, condition=data.condition
        )
        await set_condition.execute(command)
        return Ack()

    @get("/context", summary="The execution's context")
    async def get_context(
        self,
        execution_id: ExecutionId,
        context: NamedDependency[RequestContext],
        get_context: NamedDependency[GetContext],
    ) -> Envelope[ContextOut]:
        command = GetContextCommand(context=context, execution_id=execution_id)
        return Envelope(data=ContextOut.of(await get_context.execute(command)))


@post(
    "/tool-actions/execute",
    status_code=200,
    tags=["tools"],
    security=[{"bearer": []}],
    summary="Run a tool action",
)
async def execute_tool_action(
    data: Annotated[ToolActionBody, Body(description="`params`, or `config` as the helpers send")],
    context: NamedDependency[RequestContext],
    run_tool_action: NamedDependency[RunToolAction],
) -> ToolResultOut:
    command = RunToolActionCommand(
        context=context, tool=data.tool, action=data.action, params=data.parameters()
    )
    return ToolResultOut.of(await run_tool_action.execute(command))
