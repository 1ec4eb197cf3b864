"""Embedded mode as a person meets it: real `cronium-runtime` processes on a bare machine.

Only PATH, HOME and XDG_DATA_HOME (in the test's folder) come in, plus what the fixtures of
conftest.py set for every process (an empty CONFIG_FILE, no drain delay, coverage's variables)
and what each test sets. Everything the processes share lives in the store folder.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from litestar import Litestar
from loguru import logger

from application.report_execution import ReportExecutionCommand
from domain.model import ExecutionOutcome, ExecutionReport, WrittenVariable
from entrypoints.cli.serve import DrainingServer
from entrypoints.container import Container
from entrypoints.dev_secret import with_development_secret
from entrypoints.logs import _json_line
from entrypoints.settings import load_settings

if TYPE_CHECKING:
    from conftest import RunCli, ServerProcess, StartServer

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PROCESS_TIMEOUT = 15.0
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TRY_IT_START = 'eval "$(./dev cli executions create'


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_execution(run_cli: RunCli, env: dict[str, str], *args: str) -> dict[str, Any]:
    finished = run_cli(env, "executions", "create", *args, "--json")
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert len(lines) == 1, finished.stdout
    created = json.loads(lines[0])
    assert set(created) == {"apiUrl", "executionId", "token"}
    return created


def path_of(created: dict[str, Any], server: ServerProcess, rest: str) -> str:
    """The path under the printed API URL, which must be the server's address."""
    url = urlsplit(created["apiUrl"])
    assert (url.scheme, url.hostname, url.port) == ("http", HOST, server.port)
    return f"/executions/{created['executionId']}{rest}"


def without_host(environment: dict[str, str]) -> dict[str, str]:
    """The fixture's environment as a person's shell has it: a PORT, but no HOST."""
    return {name: value for name, value in environment.items() if name != "HOST"}


def stop_once_logged(server: ServerProcess, access_line: str, *, times: int = 1) -> int:
    """SIGTERM once the access line of the last request is on stderr; the exit status.

    Stopping while the server still writes a log line can lose the SIGTERM (see
    test_a_sigterm_that_lands_while_a_line_is_logged_still_stops_the_server), so the tests wait
    for the line, which the server writes just after the answer.
    """
    server.wait_for_stderr(lambda text: text.count(access_line) >= times)
    return server.stop()


# --- executions create, serve, restart --------------------------------------------------------


def test_an_execution_created_on_a_bare_machine_is_served_and_its_variable_survives_a_restart(
    start_server: StartServer, run_cli: RunCli, environment: dict[str, str]
) -> None:
    # The CLI sees no HOST: the printed URL must turn the default 0.0.0.0 into 127.0.0.1.
    env = without_host(environment)
    created = create_execution(
        run_cli, env, "--input", '{"name": "world"}', "--event-name", "hello"
    )
    assert created["apiUrl"] == f"http://127.0.0.1:{env['PORT']}"
    token = bearer(created["token"])

    server = start_server(PORT=env["PORT"])
    read_input = server.request("GET", path_of(created, server, "/input"), headers=token)
    context = server.request("GET", path_of(created, server, "/context"), headers=token)
    written = server.request(
        "PUT",
        path_of(created, server, "/variables/counter"),
        body={"value": {"count": 1, "word": "wörld"}},
        headers=token,
    )
    stopped = stop_once_logged(server, "PUT /executions/{execution_id}/variables/{key} 200")
    assert stopped == 0, server.stderr[-3000:]

    assert read_input.status == 200
    assert read_input.json() == {"success": True, "data": {"name": "world"}}
    assert context.status == 200
    data = context.json()["data"]
    assert data["executionId"] == created["executionId"]
    assert data["userId"] == "local"
    assert (data["name"], data["eventName"], data["type"]) == ("hello", "hello", "SCRIPT")
    assert TIMESTAMP.match(data["startTime"]), data["startTime"]
    assert data["metadata"] == {"input": {"name": "world"}}
    assert written.status == 200
    assert written.json()["data"]["value"] == {"count": 1, "word": "wörld"}

    restarted = start_server(PORT=env["PORT"])
    read_back = restarted.request(
        "GET", path_of(created, restarted, "/variables/counter"), headers=token
    )
    context_again = restarted.request("GET", path_of(created, restarted, "/context"), headers=token)
    printed = run_cli(env, "vars", "get", "counter")
    second = create_execution(run_cli, env)
    seen_by_second = restarted.request(
        "GET", path_of(second, restarted, "/variables/counter"), headers=bearer(second["token"])
    )
    variable_route = "GET /executions/{execution_id}/variables/{key} 200"
    assert stop_once_logged(restarted, variable_route, times=2) == 0, restarted.stderr[-3000:]

    assert read_back.status == 200
    assert read_back.json()["data"]["value"] == {"count": 1, "word": "wörld"}
    assert context_again.json()["data"]["startTime"] == data["startTime"]
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == {"count": 1, "word": "wörld"}
    assert second["executionId"] != created["executionId"]
    assert seen_by_second.status == 200
    assert seen_by_second.json()["data"]["value"] == {"count": 1, "word": "wörld"}


def test_a_token_opens_only_the_execution_it_was_created_with(
    start_server: StartServer, run_cli: RunCli, environment: dict[str, str]
) -> None:
    env = without_host(environment)
    first = create_execution(run_cli, env, "--input", "1")
    second = create_execution(run_cli, env, "--input", "2")
    server = start_server(PORT=env["PORT"])

    crossed = server.request(
        "GET", path_of(second, server, "/input"), headers=bearer(first["token"])
    )

    assert stop_once_logged(server, "GET /executions/{execution_id}/input 403") == 0
    assert crossed.status == 403
    assert crossed.json()["code"] == "EXECUTION_MISMATCH"


def test_an_input_piped_on_stdin_reaches_the_script(
    start_server: StartServer, environment: dict[str, str]
) -> None:
    env = without_host(environment)
    finished = subprocess.run(
        [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            'printf "%s" "$1" | ./dev cli executions create --input-file - --json',
            "bash",
            '{"piped": ["ü", 1]}',
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    created = json.loads(finished.stdout)
    server = start_server(PORT=env["PORT"])

    answer = server.request(
        "GET", path_of(created, server, "/input"), headers=bearer(created["token"])
    )

    assert stop_once_logged(server, "GET /executions/{execution_id}/input 200") == 0
    assert answer.json() == {"success": True, "data": {"piped": ["ü", 1]}}


# --- the README's "Try it", run as written ----------------------------------------------------


def readme_try_it_block() -> str:
    """The ```bash block of the README's "Try it" section that creates an execution."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    _, found, rest = readme.partition("\n## Try it\n")
    assert found, "README.md has no '## Try it' section"
    section = rest.split("\n## ", 1)[0]
    blocks = [
        block
        for block in re.findall(r"^```bash\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
        if block.startswith(TRY_IT_START)
    ]
    assert len(blocks) == 1, f"expected one ```bash block starting {TRY_IT_START!r}"
    return blocks[0]


def json_documents(text: str) -> tuple[list[Any], str]:
    """The JSON documents `text` starts with, one a line (each curl line adds a newline),
    and what follows them."""
    lines = text.splitlines(keepends=True)
    documents = []
    while lines and lines[0][:1] in "{[":
        documents.append(json.loads(lines.pop(0)))
    return documents, "".join(lines)


def report_of(env: dict[str, str], execution_id: str) -> ExecutionReport:
    """What the execution did, read from the store through the container the server uses."""

    async def report() -> ExecutionReport:
        settings, _ = with_development_secret(load_settings(env, cwd=REPO))
        container = Container(settings=settings)
        if (opening := container.init_resources()) is not None:
            await opening
        try:
            return await container.report_execution().execute(
                ReportExecutionCommand(execution_id=execution_id, user_id="local")
            )
        finally:
            if (closing := container.shutdown_resources()) is not None:
                await closing

    return asyncio.run(report())


def test_the_readmes_try_it_block_runs_as_written(start_server: StartServer) -> None:
    server = start_server()
    assert shutil.which("curl", path=server.env["PATH"]), "the README's block needs curl"
    script = readme_try_it_block()

    finished = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=server.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )

    assert finished.returncode == 0, f"stdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"
    out = finished.stdout
    assert out.startswith('{"success":true,"data":{"name":"world"}}'), out
    documents, rest = json_documents(out)
    assert len(documents) == 7, out
    (
        read_input,
        context,
        written,
        read_back,
        output_set,
        condition_set,
        tool_result,
    ) = documents
    assert read_input == {"success": True, "data": {"name": "world"}}
    assert context["data"]["eventName"] == "hello"
    assert written["data"]["value"] == {"count": 1}
    assert read_back["success"] is True
    assert read_back["data"]["value"] == {"count": 1}
    assert output_set == {"success": True}
    assert condition_set == {"success": True}
    assert tool_result["success"] is True
    # `vars list`, then `vars get counter`.
    assert rest.splitlines() == ["counter", rest.splitlines()[-1]]
    assert json.loads(rest.splitlines()[-1]) == {"count": 1}

    # Read back from the store file once the server is gone: it was stored, not just served.
    stopped = stop_once_logged(server, "POST /tool-actions/execute 200")
    assert stopped == 0, server.stderr[-3000:]
    execution_id = context["data"]["executionId"]
    report = report_of(server.env, execution_id)
    assert report.outcome == ExecutionOutcome(
        execution_id=execution_id,
        has_output=True,
        output={"greeting": "hello, world"},
        condition=True,
    )
    assert report.variables_read == ["counter"]
    assert report.variables_written == {"counter": WrittenVariable(exists=True, value={"count": 1})}
    assert [(r.call.tool, r.call.action, r.call.params) for r in report.tool_calls] == [
        ("log", "note", {"text": "hello"})
    ]
    # input, context, put, get, output, condition, tool action.
    assert report.audit_events == 7


# --- a SIGTERM that lands while a log line is written -----------------------------------------


class StderrInterruptedBySigterm:
    """Stands in for sys.stderr as the server has it: a write cannot be re-entered (Python's
    BufferedWriter raises "reentrant call"), and the first write is interrupted by SIGTERM,
    whose handler runs inside it, as CPython runs signal handlers between bytecodes."""

    def __init__(self, deliver_sigterm: Callable[[], None]) -> None:
        self._deliver_sigterm: Callable[[], None] | None = deliver_sigterm
        self._writing = False
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        if self._writing:
            raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")
        self._writing = True
        try:
            if (deliver := self._deliver_sigterm) is not None:
                self._deliver_sigterm = None
                deliver()
            self.lines.append(text)
        finally:
            self._writing = False
        return len(text)

    def flush(self) -> None:
        pass


async def test_a_sigterm_that_lands_while_a_line_is_logged_still_stops_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = Litestar(route_handlers=[])
    app.state.serving = True
    config = uvicorn.Config(app, log_config=None)
    config.load()
    server = DrainingServer(config, drain_delay=0.0)
    stderr = StderrInterruptedBySigterm(lambda: server.handle_exit(signal.SIGTERM, None))
    monkeypatch.setattr(sys, "stderr", stderr)
    sink = logger.add(_json_line, level="INFO", format="{message}")
    try:
        logger.info("PUT /executions/{execution_id}/variables/{key} 200 2.5ms")
    finally:
        logger.remove(sink)

    assert app.state.serving is False
    assert await server.on_tick(1) is True
