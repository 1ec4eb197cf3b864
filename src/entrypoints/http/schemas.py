"""The wire shapes of SPEC sections 3 and 4, where they differ from the domain's."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

from domain.model import ExecutionContext, ToolResult, Variable, VariableSummary, utc_timestamp

T = TypeVar("T")


class Envelope(msgspec.Struct, Generic[T], kw_only=True):
    """`{"success": true, "data": ...}`; `data` is always present and may be null."""

    success: bool = True
    data: T


class Ack(msgspec.Struct, kw_only=True):
    success: bool = True


class ErrorBody(msgspec.Struct, kw_only=True):
    success: Literal[False]
    error: str
    message: str
    code: str


# Requests.


class OutputBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    data: Any


class VariableBody(msgspec.Struct, kw_only=True):
    value: Any


class ConditionBody(msgspec.Struct, kw_only=True):
    condition: bool


# Documented, not enforced here: the use case refuses a blank name with a message naming
# it. Litestar reads `extra_json_schema["extra"]` as its schema fields.
NonBlank = Annotated[str, msgspec.Meta(extra_json_schema={"extra": {"pattern": r"\S"}})]


class ToolActionBody(msgspec.Struct, kw_only=True):
    """The Python and Bash helpers send `config`, the Node one `params`; `params` wins."""

    tool: NonBlank
    action: NonBlank
    params: dict[str, Any] | None = None
    config: dict[str, Any] | None = None

    def parameters(self) -> dict[str, Any]:
        if self.params is not None:
            return self.params
        return self.config if self.config is not None else {}


# Replies.


class VariableOut(msgspec.Struct, kw_only=True, rename="camel"):
    key: str
    value: Any
    updated_at: str

    @classmethod
    def of(cls, variable: Variable) -> VariableOut:
        return cls(
            key=variable.key, value=variable.value, updated_at=utc_timestamp(variable.updated_at)
        )


class VariableSummaryOut(msgspec.Struct, kw_only=True, rename="camel"):
    key: str
    updated_at: str

    @classmethod
    def of(cls, summary: VariableSummary) -> VariableSummaryOut:
        return cls(key=summary.key, updated_at=utc_timestamp(summary.updated_at))


class ContextOut(msgspec.Struct, kw_only=True, rename="camel"):
    """The execution context. The helpers read the event's `id`, `name` and `type` at the top."""

    execution_id: str
    job_id: str | None
    user_id: str
    event_id: str | None
    id: Any
    name: Any
    type: Any
    event_name: Any
    event_type: Any
    start_time: str | None
    metadata: dict[str, Any]
    event: dict[str, Any] | None
    user: dict[str, Any] | None

    @classmethod
    def of(cls, context: ExecutionContext) -> ContextOut:
        event = context.event or {}
        return cls(
            execution_id=context.execution_id,
            job_id=context.job_id,
            user_id=context.user_id,
            event_id=context.event_id,
            id=event.get("id", context.event_id),
            name=event.get("name"),
            type=event.get("type"),
            event_name=event.get("name"),
            event_type=event.get("type"),
            start_time=utc_timestamp(context.start_time) if context.start_time else None,
            metadata=context.metadata,
            event=context.event,
            user=context.user,
        )


class ToolResultOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The tool's own result, not wrapped in the envelope."""

    success: bool
    data: Any
    error: str | None = None
    code: str | None = None
    metadata: dict[str, Any] | None = None

    @classmethod
    def of(cls, result: ToolResult) -> ToolResultOut:
        return cls(
            success=result.success,
            data=result.data,
            error=result.error,
            code=result.code,
            metadata=result.metadata,
        )


class Health(msgspec.Struct, kw_only=True):
    status: Literal["healthy"]
    time: str
    version: str


class CheckOut(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    status: Literal["up", "down", "disabled"]
    latency_ms: float
    error: str | None = None


class Readiness(msgspec.Struct, kw_only=True):
    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, CheckOut]
