"""The script API of SPEC section 4. Handlers translate between the wire and a use case."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, JSONBody, PathParameter

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
from domain.model import MAX_KEY_LENGTH
from entrypoints.http.auth import request_context
from entrypoints.http.openapi import (
    EXECUTION_PATH,
    EXECUTION_SCHEME,
    SCRIPT_REQUEST,
    WITH_BODY,
    documented,
    error_statuses,
)
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

ExecutionId = Annotated[str, PathParameter(description="The execution's id.")]

# The rules of `domain.model.validate_variable_key` that a JSON Schema can state, so that
# the API document promises only keys the service takes: no control characters, and no
# `.` or `..` segment (a proxy normalising the URL would rewrite it).
KEY_PATTERN = (
    r"^(?!\.{1,2}(?:/|$))(?!.*/\.{1,2}(?:/|$))"
    r"[^\u0000-\u001f\u007f-\u009f]{1," + str(MAX_KEY_LENGTH) + "}$"
)
VariableKey = Annotated[
    str,
    PathParameter(
        description="The variable's key, URL-encoded (`%2F` for a slash inside it) and decoded "
        f"once: 1 to {MAX_KEY_LENGTH} characters, no control characters, no `.` or `..` "
        "segment; anything else is 400 `INVALID_KEY`.",
        # Documented only: Litestar would refuse a bad key with its own error before the
        # use case could name it, and sees the key with a leading slash besides.
        schema_extra={"min_length": 1, "max_length": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
    ),
]


def variable_key(request: Request[Any, Any, Any], key: str) -> str:
    """The key as the client encoded it, decoded exactly once.

    Taken from the raw path: the ASGI server has decoded `%2F` into a slash and Litestar
    then collapses and trims slashes, which would turn `a%2F` and `%2Fa` into `a`. The
    route's `{key:path}` (handed over with a leading slash) is the fallback for servers
    that give no raw path.
    """
    raw_path: bytes | None = request.scope.get("raw_path")
    if raw_path is None:
        return key[1:] if key.startswith("/") else key
    # /executions/{id}/variables/{key}: the key is whatever follows the fourth slash.
    segments = raw_path.split(b"?", 1)[0].split(b"/", 4)
    raw_key = segments[4] if len(segments) == 5 else b""
    try:
        return unquote_to_bytes(raw_key).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyError("the variable key is not UTF-8 once URL-decoded") from None


# The errors each kind of route can answer (entrypoints.http.openapi documents them).
READ = error_statuses(SCRIPT_REQUEST, EXECUTION_PATH)
WRITE = error_statuses(READ, WITH_BODY)
IDEMPOTENT_WRITE = error_statuses(WRITE, (400, 409))
KEYED = error_statuses(READ, (400,))
KEYED_WRITE = error_statuses(WRITE, KEYED)


# Each handler has one dependency, its use case, and builds the request's context and key
# itself: Litestar resolves two or more dependencies in a task group per request (see
# `entrypoints.http.auth.request_context`).
class ExecutionController(Controller):
    path = "/executions/{execution_id:str}"
    tags = ["executions"]
    security = [{EXECUTION_SCHEME: []}]

    @get("/input", summary="The execution's input", operation_class=documented(*READ))
    async def get_input(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        get_input: NamedDependency[GetInput],
    ) -> Envelope[Any]:
        command = GetInputCommand(context=request_context(request), execution_id=execution_id)
        return Envelope(data=await get_input.execute(command))

    @post(
        "/output",
        status_code=200,
        summary="Set the execution's output",
        operation_class=documented(*IDEMPOTENT_WRITE, idempotent=True),
    )
    async def set_output(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        data: JSONBody[OutputBody],
        set_output: NamedDependency[SetOutput],
    ) -> Ack:
        command = SetOutputCommand(
            context=request_context(request), execution_id=execution_id, output=data.data
        )
        await set_output.execute(command)
        return Ack()

    @get(
        "/variables",
        summary="The user's variables: keys and write times",
        operation_class=documented(*READ),
    )
    async def list_variables(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        list_variables: NamedDependency[ListVariables],
    ) -> Envelope[list[VariableSummaryOut]]:
        command = ListVariablesCommand(context=request_context(request), execution_id=execution_id)
        summaries = await list_variables.execute(command)
        return Envelope(data=[VariableSummaryOut.of(summary) for summary in summaries])

    @get("/variables/{key:path}", summary="Read a variable", operation_class=documented(*KEYED))
    async def get_variable(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        key: VariableKey,
        get_variable: NamedDependency[GetVariable],
    ) -> Envelope[VariableOut]:
        command = GetVariableCommand(
            context=request_context(request),
            execution_id=execution_id,
            key=variable_key(request, key),
        )
        return Envelope(data=VariableOut.of(await get_variable.execute(command)))

    @put(
        "/variables/{key:path}",
        summary="Write a variable",
        operation_class=documented(*KEYED_WRITE),
    )
    async def set_variable(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        key: VariableKey,
        data: JSONBody[VariableBody],
        set_variable: NamedDependency[SetVariable],
    ) -> Envelope[VariableOut]:
        command = SetVariableCommand(
            context=request_context(request),
            execution_id=execution_id,
            key=variable_key(request, key),
            value=data.value,
        )
        return Envelope(data=VariableOut.of(await set_variable.execute(command)))

    @delete(
        "/variables/{key:path}",
        status_code=200,
        summary="Delete a variable",
        operation_class=documented(*KEYED),
    )
    async def delete_variable(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        key: VariableKey,
        delete_variable: NamedDependency[DeleteVariable],
    ) -> Ack:
        command = DeleteVariableCommand(
            context=request_context(request),
            execution_id=execution_id,
            key=variable_key(request, key),
        )
        await delete_variable.execute(command)
        return Ack()

    # A write or delete of the empty key (`.../variables/`, whose trailing slash Litestar
    # drops) is 400 INVALID_KEY, as SPEC section 3 asks, rather than a 405: these exist
    # only to refuse, through the use case, so the refusal is audited like any other.
    @put(
        "/variables",
        summary="Write a variable with an empty key: always 400 INVALID_KEY",
        operation_class=documented(*KEYED_WRITE, succeeds=False),
    )
    async def set_variable_without_key(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        data: JSONBody[VariableBody],
        set_variable: NamedDependency[SetVariable],
    ) -> Envelope[VariableOut]:
        command = SetVariableCommand(
            context=request_context(request), execution_id=execution_id, key="", value=data.value
        )
        return Envelope(data=VariableOut.of(await set_variable.execute(command)))

    @delete(
        "/variables",
        status_code=200,
        summary="Delete a variable with an empty key: always 400 INVALID_KEY",
        operation_class=documented(*KEYED, succeeds=False),
    )
    async def delete_variable_without_key(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        delete_variable: NamedDependency[DeleteVariable],
    ) -> Ack:
        command = DeleteVariableCommand(
            context=request_context(request), execution_id=execution_id, key=""
        )
        await delete_variable.execute(command)
        return Ack()

    @post(
        "/condition",
        status_code=200,
        summary="Set the workflow condition",
        operation_class=documented(*WRITE),
    )
    async def set_condition(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        data: JSONBody[ConditionBody],
        set_condition: NamedDependency[SetCondition],
    ) -> Ack:
        command = SetConditionCommand(
            context=request_context(request), execution_id=execution_id, condition=data.condition
        )
        await set_condition.execute(command)
        return Ack()

    @get("/context", summary="The execution's context", operation_class=documented(*READ))
    async def get_context(
        self,
        request: Request[Any, Any, Any],
        execution_id: ExecutionId,
        get_context: NamedDependency[GetContext],
    ) -> Envelope[ContextOut]:
        command = GetContextCommand(context=request_context(request), execution_id=execution_id)
        return Envelope(data=ContextOut.of(await get_context.execute(command)))


@post(
    "/tool-actions/execute",
    status_code=200,
    tags=["tools"],
    security=[{EXECUTION_SCHEME: []}],
    summary="Run a tool action",
    description="The tool's result itself, not wrapped in the envelope. Which params a tool "
    "needs depends on the tool: a built-in tool's missing or mistyped parameter is 400 "
    "`INVALID_TOOL_PARAMS`; an unconfigured tool or unknown action is 404 `TOOL_NOT_FOUND`.",
    # 404: an unknown tool; no execution in the path, so no 403.
    operation_class=documented(
        *error_statuses(SCRIPT_REQUEST, WITH_BODY, (404, 409)), idempotent=True
    ),
)
async def execute_tool_action(
    request: Request[Any, Any, Any],
    data: Annotated[ToolActionBody, Body(description="`params`, or `config` as the helpers send")],
    run_tool_action: NamedDependency[RunToolAction],
) -> ToolResultOut:
    command = RunToolActionCommand(
        context=request_context(request),
        tool=data.tool,
        action=data.action,
        params=data.parameters(),
    )
    return ToolResultOut.of(await run_tool_action.execute(command))
