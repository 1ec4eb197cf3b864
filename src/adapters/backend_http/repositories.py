"""The ports over the Cronium backend (SPEC section 5), through `HttpBackendClient`."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from adapters.backend_http.client import (
    OPEN,
    BackendStatusError,
    HttpBackendClient,
    ToolOutcomeUnknown,
)
from adapters.clock import SystemClock
from application.ports import (
    Clock,
    ExecutionRepository,
    HealthProbe,
    ToolGateway,
    VariableRepository,
)
from domain.errors import BackendError, ExecutionNotFoundError
from domain.model import (
    DependencyHealth,
    ExecutionContext,
    ToolCall,
    ToolResult,
    Variable,
    VariableSummary,
    utc_timestamp,
)

TOOL_OUTCOME_UNKNOWN_MESSAGE = "the tool may or may not have run; it will not be sent again"


def _segment(value: str) -> str:
    return quote(value, safe="")


def _parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise BackendError(f"the Cronium backend sent no valid {what}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BackendError(f"the Cronium backend sent an invalid {what}: {value!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str | int):
        return str(value)
    raise BackendError(f"the Cronium backend's context has an invalid {name}")


def _optional_object(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BackendError(f"the Cronium backend's context has an invalid {name}")
    return value


def _expect_success(body: Any, operation: str) -> None:
    if not isinstance(body, dict) or body.get("success") is not True:
        raise BackendError(f"the Cronium backend's reply to {operation} is not {{success: true}}")


class BackendExecutionRepository(ExecutionRepository):
    """Executions as the backend keeps them.

    The backend's context has no start time as a rule: when it sends none, the time of this
    process's first read of the execution stands in, kept in a small bounded dict (the
    Valkey context cache carries it to the other replicas).
    """

    def __init__(
        self,
        client: HttpBackendClient,
        *,
        clock: Clock | None = None,
        start_times_limit: int = 10_000,
    ) -> None:
        self._client = client
        self._clock = clock or SystemClock()
        self._start_times: OrderedDict[str, datetime] = OrderedDict()
        self._start_times_limit = max(1, start_times_limit)

    async def get_context(self, execution_id: str) -> ExecutionContext:
        status, body = await self._client.request(
            "get_context",
            "GET",
            f"/api/internal/executions/{_segment(execution_id)}/context",
            idempotent=True,
        )
        if status == 404:
            raise ExecutionNotFoundError(execution_id)
        if not isinstance(body, dict):
            raise BackendError("the Cronium backend's context is not a JSON object")
        user_id = _optional_str(body, "userId")
        if user_id is None:
            raise BackendError("the Cronium backend's context has no userId")
        metadata = body.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise BackendError("the Cronium backend's context has an invalid metadata")
        if body.get("startTime") is not None:
            start_time = _parse_time(body["startTime"], "startTime")
        else:
            start_time = self._first_read(execution_id)
        return ExecutionContext(
            execution_id=execution_id,
            user_id=user_id,
            job_id=_optional_str(body, "jobId"),
            event_id=_optional_str(body, "eventId"),
            metadata=metadata,
            event=_optional_object(body, "event"),
            user=_optional_object(body, "user"),
            start_time=start_time,
        )

    def _first_read(self, execution_id: str) -> datetime:
        moment = self._start_times.get(execution_id)
        if moment is not None:
            self._start_times.move_to_end(execution_id)
            return moment
        moment = self._clock.now()
        self._start_times[execution_id] = moment
        while len(self._start_times) > self._start_times_limit:
            self._start_times.popitem(last=False)
        return moment

    async def save_output(self, execution_id: str, output: Any, at: datetime) -> None:
        await self._post(
            "save_output",
            execution_id,
            "output",
            {"output": output, "timestamp": utc_timestamp(at)},
        )

    async def save_condition(self, execution_id: str, condition: bool, at: datetime) -> None:
        await self._post(
            "save_condition",
            execution_id,
            "condition",
            {"condition": condition, "timestamp": utc_timestamp(at)},
        )

    async def _post(self, operation: str, execution_id: str, leaf: str, body: Any) -> None:
        status, reply = await self._client.request(
            operation,
            "POST",
            f"/api/internal/executions/{_segment(execution_id)}/{leaf}",
            json=body,
            idempotent=True,
        )
        if status == 404:
            raise ExecutionNotFoundError(execution_id)
        _expect_success(reply, operation)


class BackendVariableRepository(VariableRepository):
    """A user's variables in the backend; keys and user ids travel URL-encoded."""

    def __init__(self, client: HttpBackendClient) -> None:
        self._client = client

    @staticmethod
    def _path(user_id: str, key: str | None = None) -> str:
        path = f"/api/internal/variables/{_segment(user_id)}"
        return path if key is None else f"{path}/{_segment(key)}"

    async def get(self, user_id: str, key: str) -> Variable | None:
        status, body = await self._client.request(
            "get_variable", "GET", self._path(user_id, key), idempotent=True
        )
        if status == 404:
            return None
        if not isinstance(body, dict) or "value" not in body:
            raise BackendError("the Cronium backend's variable is not {key, value, updatedAt}")
        return Variable(
            key=key, value=body["value"], updated_at=_parse_time(body.get("updatedAt"), "updatedAt")
        )

    async def put(self, user_id: str, key: str, value: Any, at: datetime) -> Variable:
        status, body = await self._client.request(
            "put_variable", "PUT", self._path(user_id, key), json={"value": value}, idempotent=True
        )
        if status == 404:
            raise BackendError("the Cronium backend answered 404 to a variable write")
        _expect_success(body, "put_variable")
        return Variable(key=key, value=value, updated_at=at)

    async def delete(self, user_id: str, key: str) -> bool:
        try:
            status, body = await self._client.request(
                "delete_variable", "DELETE", self._path(user_id, key), idempotent=True
            )
        except BackendStatusError as error:
            if error.status == 405:
                raise BackendError("the backend cannot delete variables") from error
            raise
        if status == 404:
            return False
        _expect_success(body, "delete_variable")
        return True

    async def list(self, user_id: str) -> list[VariableSummary]:
        try:
            status, body = await self._client.request(
                "list_variables", "GET", self._path(user_id), idempotent=True
            )
        except BackendStatusError as error:
            if error.status == 405:
                raise BackendError("the backend cannot list variables") from error
            raise
        if status == 404:
            raise BackendError("the backend cannot list variables")
        if not isinstance(body, list):
            raise BackendError("the Cronium backend's variable list is not a JSON array")
        summaries = []
        for item in body:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise BackendError("the Cronium backend's variable list has an invalid entry")
            summaries.append(
                VariableSummary(
                    key=item["key"], updated_at=_parse_time(item.get("updatedAt"), "updatedAt")
                )
            )
        summaries.sort(key=lambda summary: summary.key)
        return summaries


class BackendToolGateway(ToolGateway):
    """Tool actions run by the backend. Sent at most once: after the request may have
    reached the backend every outcome is a `ToolResult`; `BackendUnavailableError` means
    nothing was sent (connection refused, breaker open) and a repeat is safe."""

    def __init__(self, client: HttpBackendClient) -> None:
        self._client = client

    async def execute(self, call: ToolCall) -> ToolResult:
        body = {
            "executionId": call.execution_id,
            "userId": call.user_id,
            "tool": call.tool,
            "action": call.action,
            "params": call.params,
        }
        try:
            status, reply = await self._client.request(
                "execute_tool", "POST", "/api/internal/tools/execute", json=body, idempotent=False
            )
        except ToolOutcomeUnknown:
            return _unknown()
        except BackendStatusError as refused:
            return ToolResult(
                success=False, code="TOOL_FAILED", error=refused.backend_error or str(refused)
            )
        if status == 404:
            error_text = reply.get("error") if isinstance(reply, dict) else None
            return ToolResult(
                success=False,
                code="TOOL_FAILED",
                error=error_text if isinstance(error_text, str) else "the backend answered 404",
            )
        if not isinstance(reply, dict) or not isinstance(reply.get("success"), bool):
            return _unknown()
        success = reply["success"]
        error = reply.get("error")
        code = reply.get("code")
        metadata = reply.get("metadata")
        return ToolResult(
            success=success,
            data=reply.get("data"),
            error=error if isinstance(error, str) else None,
            code=code if isinstance(code, str) else (None if success else "TOOL_FAILED"),
            metadata=metadata if isinstance(metadata, dict) else None,
        )


def _unknown() -> ToolResult:
    return ToolResult(
        success=False, code="TOOL_OUTCOME_UNKNOWN", error=TOOL_OUTCOME_UNKNOWN_MESSAGE
    )


class BackendHealthProbe(HealthProbe):
    """The backend as the client last saw it; no request is made.

    SPEC section 5 documents no health route, and every documented call either costs the
    backend work or needs an id that exists, so the probe reads the client instead: "down"
    while the circuit breaker is open, or when the last call failed as unavailable or timed
    out less than one breaker cool-down ago; otherwise "up" (a backend never called yet
    reads "up": the first real call finds out).
    """

    name = "backend"

    def __init__(self, client: HttpBackendClient) -> None:
        self._client = client

    async def check(self) -> DependencyHealth:
        client = self._client
        if client.breaker_state == OPEN:
            return DependencyHealth(status="down", error="the circuit breaker is open")
        last = client.last_failure
        if last is not None:
            outcome, at = last
            if outcome in {"unavailable", "timeout"} and (
                client.clock() - at < client.breaker_cooldown
            ):
                return DependencyHealth(status="down", error=f"the last call failed: {outcome}")
        return DependencyHealth(status="up")
