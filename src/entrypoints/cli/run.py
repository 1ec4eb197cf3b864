"""`cronium-runtime run -- COMMAND...`: run a script against a local runtime, then report.

The embedded runtime is served in this process on a free loopback port; the command runs
as a child with `CRONIUM_RUNTIME_API`, `CRONIUM_EXECUTION_ID` and `CRONIUM_EXECUTION_TOKEN`
set; when it ends, the execution's report is printed.

Decisions (SPEC section 8 fixes only the `--json` form):
- The text summary goes to stderr, so that the command's own stdout stays what it printed.
  With `--json` the child's stdout and stderr both go to the runner's stderr and stdout
  carries exactly one JSON object.
- `output` is null when the script set none and also when it set null (the two are not
  told apart); in `written`, `before`/`after` are null for a variable that did not exist /
  was deleted (the text summary says "(unset)" and "deleted").
- Exit status: the command's; 128 + N when a signal N killed it; 127 when the command is not
  found and 126 when it cannot be executed, as a shell does (one line, no summary).
- The child stays in the runner's process group (so it keeps the terminal), and SIGINT and
  SIGTERM the runner receives are forwarded to it. A Ctrl-C at a terminal reaches both; the
  child may then see SIGINT from the terminal and from the runner (usually merged into one).
- Logging is at `warning` at least, so the server's access lines do not mix with the
  script's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import uvicorn

from application.create_execution import CreateExecutionCommand
from application.report_execution import ReportExecutionCommand
from application.set_variable import SetVariableCommand
from domain.model import ExecutionReport, Principal, ToolResult
from entrypoints.cli.local import CLI_EXECUTION_ID, CommandError, cli_context, require_embedded
from entrypoints.container import Container
from entrypoints.dev_secret import with_development_secret
from entrypoints.http.app import create_app
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings, load_settings

HOST = "127.0.0.1"
PROGRESS_AFTER = 2.0  # seconds before the progress line appears
PROGRESS_EVERY = 0.25
STARTUP_DEADLINE = 15.0
FORWARDED = (signal.SIGINT, signal.SIGTERM)
_QUIET_LEVELS = {"debug", "info"}


@dataclass(frozen=True)
class RunOptions:
    command: Sequence[str]
    input_value: Any = None
    variables: Sequence[tuple[str, Any]] = ()
    event_name: str | None = None
    event_type: str | None = None
    send_tools: bool = False
    state: str | None = None
    as_json: bool = False


def run_settings(environ: Mapping[str, str], *, state: str | None, send_tools: bool) -> Settings:
    """The settings of the environment, with `--state` as the store folder, built-in tools in
    dry run unless `--send-tools`, and the audit trail kept in the store."""
    env = dict(environ)
    if state is not None:
        env["RUNTIME_STORE_PATH"] = str(Path(state).expanduser().resolve())
    env["RUNTIME_TOOLS_MODE"] = "builtin"
    env["RUNTIME_TOOLS_DRY_RUN"] = "false" if send_tools else "true"
    settings = load_settings(env)
    # The report reads the store's audit trail, and stdout belongs to the script (or to the
    # one JSON report): the store sink is always on, and a stdout sink is left out.
    sinks = tuple(sink for sink in settings.audit.sinks if sink != "stdout")
    if "store" not in sinks:
        sinks = (*sinks, "store")
    return msgspec.structs.replace(
        settings, audit=msgspec.structs.replace(settings.audit, sinks=sinks)
    )


def run(options: RunOptions, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    settings = run_settings(environ, state=options.state, send_tools=options.send_tools)
    require_embedded(settings, "run")
    settings, _ = with_development_secret(settings)
    level = "warning" if settings.logging.level in _QUIET_LEVELS else settings.logging.level
    configure_logging(level, settings.logging.format)
    return asyncio.run(_Runner(settings, options, environ).main())


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to the runner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _Counting:
    """An ASGI wrapper counting the HTTP requests served, for the progress line."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


@dataclass
class _Runner:
    settings: Settings
    options: RunOptions
    environ: Mapping[str, str]
    child: asyncio.subprocess.Process | None = None
    signalled: int | None = None
    app: _Counting | None = None
    _progress_shown: bool = field(default=False)

    async def main(self) -> int:
        container = Container(settings=self.settings)
        self.app = _Counting(create_app(container=container))
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        server = _QuietServer(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        port = int(sock.getsockname()[1])
        loop = asyncio.get_running_loop()
        for sig in FORWARDED:
            loop.add_signal_handler(sig, self._forward, sig)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await self._started(server, serving)
            return await self._run(container, port)
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, STARTUP_DEADLINE)
            sock.close()
            for sig in FORWARDED:
                loop.remove_signal_handler(sig)

    async def _started(self, server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not server.started:
            if serving.done():
                serving.result()  # its error, if it has one
                raise CommandError("the local runtime did not start")
            if time.monotonic() > deadline:
                raise CommandError("the local runtime did not start in time")
            await asyncio.sleep(0.01)

    def _forward(self, sig: int) -> None:
        if self.child is not None and self.child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(sig)
        elif self.child is None:
            self.signalled = sig

    async def _run(self, container: Container, port: int) -> int:
        options, settings = self.options, self.settings
        user_id = settings.embedded.user_id
        cli = cli_context(settings)
        for key, value in options.variables:
            await container.set_variable().execute(
                SetVariableCommand(context=cli, execution_id=CLI_EXECUTION_ID, key=key, value=value)
            )
        before = await _snapshot(container, user_id)
        context = await container.create_execution().execute(
            CreateExecutionCommand(
                user_id=user_id,
                input=options.input_value,
                event_name=options.event_name,
                event_type=options.event_type,
            )
        )
        principal = Principal(
            execution_id=context.execution_id,
            user_id=context.user_id,
            event_id=context.event_id,
            job_id=context.job_id,
        )
        token = container.token_codec().issue(principal, settings.auth.token_expiration)
        if self.signalled is not None:
            return 128 + self.signalled
        env = {
            **self.environ,
            "CRONIUM_RUNTIME_API": f"http://{HOST}:{port}",
            "CRONIUM_EXECUTION_ID": context.execution_id,
            "CRONIUM_EXECUTION_TOKEN": token,
        }
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        try:
            self.child = await asyncio.create_subprocess_exec(
                *options.command,
                env=env,
                stdout=sys.stderr.fileno() if options.as_json else None,
            )
        except FileNotFoundError:
            print(f"cronium-runtime: command not found: {options.command[0]}", file=sys.stderr)
            return 127
        except PermissionError:
            print(f"cronium-runtime: cannot execute: {options.command[0]}", file=sys.stderr)
            return 126
        progress = asyncio.create_task(self._progress(started))
        try:
            returncode = await self.child.wait()
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
            self._clear_progress()
        duration_ms = round((time.monotonic() - started) * 1000)
        exit_code = 128 - returncode if returncode < 0 else returncode
        # The report counts the events the store's trail holds: deliver them there first.
        await container.audit_shipper().flush(settings.server.shutdown_timeout, patient=True)
        report = await container.report_execution().execute(
            ReportExecutionCommand(execution_id=context.execution_id, user_id=user_id)
        )
        summary = summarize(context.execution_id, exit_code, duration_ms, report, before)
        if options.as_json:
            sys.stdout.write(json.dumps(public(summary), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            sys.stderr.write(render_text(summary))
            sys.stderr.flush()
        return exit_code

    async def _progress(self, started: float) -> None:
        if not sys.stderr.isatty():
            return
        await asyncio.sleep(PROGRESS_AFTER)
        while True:
            elapsed = time.monotonic() - started
            served = self.app.requests if self.app else 0
            noun = "request" if served == 1 else "requests"
            sys.stderr.write(f"\r\x1b[2K… running {elapsed:.1f} s, {served} {noun} served")
            sys.stderr.flush()
            self._progress_shown = True
            await asyncio.sleep(PROGRESS_EVERY)

    def _clear_progress(self) -> None:
        if self._progress_shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._progress_shown = False


async def _snapshot(container: Container, user_id: str) -> dict[str, Any]:
    """The local user's variables, keys and values, as they stand before the command."""
    repository = container.variable_repository()
    values: dict[str, Any] = {}
    for summary in await repository.list(user_id):
        variable = await repository.get(user_id, summary.key)
        if variable is not None:
            values[variable.key] = variable.value
    return values


def tool_result(result: ToolResult) -> dict[str, Any]:
    """The tool's result object: `success` and `data`, then what else it carries."""
    answer: dict[str, Any] = {"success": result.success, "data": result.data}
    for name in ("error", "code", "metadata"):
        if (value := getattr(result, name)) is not None:
            answer[name] = value
    return answer


def summarize(
    execution_id: str,
    exit_code: int,
    duration_ms: int,
    report: ExecutionReport,
    before: Mapping[str, Any],
) -> dict[str, Any]:
    """The `--json` object of SPEC section 8, every key present (null when nothing)."""
    outcome = report.outcome
    return {
        "executionId": execution_id,
        "exitCode": exit_code,
        "durationMs": duration_ms,
        "output": outcome.output if outcome.has_output else None,
        "condition": outcome.condition,
        "variables": {
            "read": list(report.variables_read),
            "written": {
                key: {"before": before.get(key), "after": now.value if now.exists else None}
                for key, now in report.variables_written.items()
            },
        },
        "toolActions": [
            {
                "tool": record.call.tool,
                "action": record.call.action,
                "params": record.call.params,
                "result": tool_result(record.result),
                "dryRun": bool((record.result.metadata or {}).get("dryRun") is True),
            }
            for record in report.tool_calls
        ],
        "auditEvents": report.audit_events,
        # Not part of the JSON object: whether each written key existed before and after.
        "_existed": {
            key: (key in before, now.exists) for key, now in report.variables_written.items()
        },
    }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render_text(summary: dict[str, Any]) -> str:
    """The summary for a person, on stderr after the command's own output."""
    existed: dict[str, tuple[bool, bool]] = summary.get("_existed", {})
    seconds = summary["durationMs"] / 1000
    lines = [
        f"── cronium-runtime run · execution {summary['executionId']}",
        f"  exit code   {summary['exitCode']} after {seconds:.2f} s",
        "  output      "
        + (_json(summary["output"]) if summary["output"] is not None else "(none)"),
        "  condition   "
        + (_json(summary["condition"]) if summary["condition"] is not None else "(not set)"),
        "  read        " + (", ".join(summary["variables"]["read"]) or "(none)"),
    ]
    written = summary["variables"]["written"]
    if not written:
        lines.append("  written     (none)")
    for index, (key, change) in enumerate(written.items()):
        was, now = existed.get(key, (change["before"] is not None, change["after"] is not None))
        old = _json(change["before"]) if was else "(unset)"
        new = _json(change["after"]) if now else "deleted"
        label = "  written     " if index == 0 else "              "
        lines.append(f"{label}{key}: {old} → {new}")
    actions = summary["toolActions"]
    if not actions:
        lines.append("  tools       (none)")
    for index, action in enumerate(actions):
        result = action["result"]
        verdict = "ok" if result["success"] else f"failed ({result.get('code') or 'error'})"
        if result.get("error"):
            verdict += f": {result['error']}"
        if action["dryRun"]:
            verdict += ", dry run (nothing sent)"
        label = "  tools       " if index == 0 else "              "
        lines.append(
            f"{label}{action['tool']}.{action['action']} {_json(action['params'])} → {verdict}"
        )
    count = summary["auditEvents"]
    lines.append(f"  audit       {count} event{'' if count == 1 else 's'}")
    return "\n".join(lines) + "\n"


def public(summary: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in summary.items() if not key.startswith("_")}
