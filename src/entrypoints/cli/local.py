"""Commands on the embedded store: create executions, read and write the local user's
variables. They drive the same container and use cases as the server."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from dependency_injector import providers

from application.create_execution import CreateExecutionCommand
from application.delete_variable import DeleteVariableCommand
from application.get_variable import GetVariableCommand
from application.list_variables import ListVariablesCommand
from application.set_variable import SetVariableCommand
from domain.audit import AuditEvent, encode_event
from domain.model import ExecutionContext, Principal, RequestContext, utc_timestamp
from entrypoints.container import Container
from entrypoints.dev_secret import with_development_secret
from entrypoints.settings import Settings

T = TypeVar("T")

# The CLI acts as an execution of its own, so its variable changes are audited like any.
CLI_EXECUTION_ID = "cli"
# Seconds a one-shot command (within `server.shutdownTimeout`) spends delivering audit
# events before it exits. They are in the outbox already; what a sink does not take in that
# time is left there for a serving process.
ONE_SHOT_FLUSH = 2.0


class CommandError(Exception):
    """A command that ran and failed (exit status 1)."""


def run_in_container(settings: Settings, work: Callable[[Container], Awaitable[T]]) -> T:
    """Run `work` with the container's resources (the local store) open, then close them."""

    async def with_resources() -> T:
        container = Container(settings=settings)
        flush_within = min(ONE_SHOT_FLUSH, settings.server.shutdown_timeout)
        container.audit_flush_within.override(providers.Object(flush_within))
        if (opening := container.init_resources()) is not None:
            await opening
        try:
            return await work(container)
        finally:
            if (closing := container.shutdown_resources()) is not None:
                await closing

    return asyncio.run(with_resources())


def require_embedded(settings: Settings, command: str) -> None:
    if not settings.embedded_mode:
        raise CommandError(
            f"{command} works on the embedded store only; unset backend.url (BACKEND_URL), "
            "since the Cronium backend creates and keeps executions itself"
        )


def create_execution(
    settings: Settings,
    *,
    input_value: Any,
    event_name: str | None,
    event_type: str | None,
    api_url: str | None,
    as_json: bool,
) -> str:
    require_embedded(settings, "executions create")
    settings, _ = with_development_secret(settings)
    command = CreateExecutionCommand(
        user_id=settings.embedded.user_id,
        input=input_value,
        event_name=event_name,
        event_type=event_type,
    )

    async def work(container: Container) -> tuple[ExecutionContext, str]:
        context = await container.create_execution().execute(command)
        principal = Principal(
            execution_id=context.execution_id,
            user_id=context.user_id,
            event_id=context.event_id,
            job_id=context.job_id,
        )
        return context, container.token_codec().issue(principal, settings.auth.token_expiration)

    context, token = run_in_container(settings, work)
    url = api_url or default_api_url(settings)
    if as_json:
        document = {"apiUrl": url, "executionId": context.execution_id, "token": token}
        return json.dumps(document)
    return "\n".join(
        f"export {name}={shlex.quote(value)}"
        for name, value in (
            ("CRONIUM_RUNTIME_API", url),
            ("CRONIUM_EXECUTION_ID", context.execution_id),
            ("CRONIUM_EXECUTION_TOKEN", token),
        )
    )


def default_api_url(settings: Settings) -> str:
    scheme = "https" if settings.security.enable_tls else "http"
    host = settings.server.host
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 (a wildcard is not an address to call)
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.server.port}"


def read_input(text: str | None, path: str | None) -> Any:
    """The execution's input from `--input JSON` or `--input-file PATH` (None without)."""
    if path is not None:
        try:
            text = Path(path).read_text() if path != "-" else sys.stdin.read()
        except OSError as error:
            raise CommandError(f"--input-file: {error.strerror}: {path!r}") from None
    if text is None:
        return None
    return parse_json(text, "--input-file" if path is not None else "--input")


def parse_json(text: str, what: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as error:
        raise ValueError(f"{what} is not JSON: {error}") from None


def cli_context(settings: Settings) -> RequestContext:
    """The context of a command-line operation: the CLI acts as the execution `cli`."""
    return RequestContext(
        principal=Principal(execution_id=CLI_EXECUTION_ID, user_id=settings.embedded.user_id),
        request_id=f"cli-{uuid.uuid4().hex}",
        client_address="cli",
    )


def variables(settings: Settings, action: str, key: str | None, value: Any, as_json: bool) -> str:
    """`vars list|get|set|delete` for the local user; the text to print."""
    require_embedded(settings, "vars")
    settings, _ = with_development_secret(settings)
    context, execution_id = cli_context(settings), CLI_EXECUTION_ID

    async def work(container: Container) -> str:
        if action == "list":
            summaries = await container.list_variables().execute(
                ListVariablesCommand(context=context, execution_id=execution_id)
            )
            if as_json:
                rows = [{"key": s.key, "updatedAt": utc_timestamp(s.updated_at)} for s in summaries]
                return json.dumps(rows, ensure_ascii=False)
            return "\n".join(summary.key for summary in summaries)
        assert key is not None
        if action == "get":
            variable = await container.get_variable().execute(
                GetVariableCommand(context=context, execution_id=execution_id, key=key)
            )
            return json.dumps(variable.value, ensure_ascii=False)
        if action == "set":
            await container.set_variable().execute(
                SetVariableCommand(context=context, execution_id=execution_id, key=key, value=value)
            )
            return ""
        await container.delete_variable().execute(
            DeleteVariableCommand(context=context, execution_id=execution_id, key=key)
        )
        return ""

    return run_in_container(settings, work)


def audit_events(settings: Settings, execution_id: str | None, limit: int, as_json: bool) -> str:
    """`audit`: the newest `limit` events of the store sink's trail, oldest first, as text
    lines or a JSON array of wire-form events."""
    if "store" not in settings.audit.sinks:
        print(
            f"cronium-runtime: note: audit.sinks is {','.join(settings.audit.sinks)}, without"
            " store: the local trail receives no new events",
            file=sys.stderr,
        )

    async def read() -> list[AuditEvent]:
        # Only the store: reading the trail needs no backend, Valkey, secret or shipper.
        container = Container(settings=settings)
        await container.store_resource.init()  # type: ignore[misc]
        try:
            trail = container.audit_store_sink()
            return await trail.latest(execution_id=execution_id, limit=limit)
        finally:
            await container.store_resource.shutdown()  # type: ignore[misc]

    events = asyncio.run(read())
    if as_json:
        return "[" + ",".join(encode_event(event).decode() for event in events) + "]"
    return "\n".join(audit_line(event) for event in events)


def audit_line(event: AuditEvent) -> str:
    """One event on one line: time, execution, action, outcome, then the details it has."""
    details = event.details
    named = (
        ("user", details.user_id),
        ("key", details.key),
        ("tool", details.tool),
        ("toolAction", details.tool_action),
        ("count", details.count),
        ("intent", details.intent_id),
        ("request", details.request_id),
    )
    extras = [
        f"{name}={json.dumps(value, ensure_ascii=False)}"
        for name, value in named
        if value is not None
    ]
    return "  ".join(
        [
            utc_timestamp(event.timestamp),
            event.execution_id or "-",
            event.action.value,
            details.outcome,
            " ".join(extras),
        ]
    ).rstrip()
