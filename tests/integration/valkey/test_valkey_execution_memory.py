"""Each `serve` process's in-process copy of execution contexts, with Valkey: once a process
has read an execution, its input and context reads send Valkey no command for it (Valkey's
`MONITOR` says so), the answers stay the same on every process, and a revoked execution is
still refused at once."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

from service_kit import Execution
from valkey_servers import HOST, ValkeyServer, require_binary

INTERNAL = "integration-internal-token-0123456789"
END = "end-of-the-monitored-requests"


@contextlib.contextmanager
def monitored(server: ValkeyServer) -> Iterator[list[str]]:
    """Every command the server ran during the body, as `MONITOR` prints them (filled when
    the body ends). `INFO commandstats` would not do: it also counts the GETs inside the
    rate limiter's script, which every request runs."""
    commands: list[str] = []
    monitor = subprocess.Popen(
        [require_binary("valkey-cli"), "-h", HOST, "-p", str(server.port), "monitor"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert monitor.stdout is not None
        assert monitor.stdout.readline().strip() == "OK"  # monitoring from here on
        yield commands
        with server.client() as client:
            client.echo(END)
        for line in monitor.stdout:
            if END in line:
                break
            commands.append(line)
    finally:
        monitor.terminate()
        monitor.wait()


def read(server: Any, script: Execution, what: str) -> Any:
    answer = server.request("GET", f"/executions/{script.id}/{what}", headers=script.headers)
    assert answer.status == 200, (answer.status, answer.body)
    return answer.json()["data"]


def test_after_the_first_read_input_and_context_reads_send_valkey_nothing(
    service: Callable[..., Any],
    run_cli: Callable[..., Any],
    cli_env: dict[str, str],
    valkey_server: ValkeyServer,
) -> None:
    created = run_cli(cli_env, "executions", "create", "--json", "--input", '{"n": [1, 2]}')
    assert created.returncode == 0, created.stderr
    fields = json.loads(created.stdout)
    script = Execution(fields["executionId"], fields["token"])
    a, b = service(valkey_server.url()), service(valkey_server.url())
    first_input, first_context = read(a, script, "input"), read(a, script, "context")
    assert first_input == {"n": [1, 2]}
    assert read(b, script, "context") == first_context  # b's first read: from Valkey

    with monitored(valkey_server) as commands:
        for server in (a, b, a, b):
            assert read(server, script, "input") == first_input
            assert read(server, script, "context") == first_context  # startTime included

    assert any("XADD" in command for command in commands)  # the requests were seen: audited
    assert [command for command in commands if f"ctx:{{{script.id}}}" in command] == []


def test_a_revoked_execution_is_refused_though_its_context_is_in_memory(
    service: Callable[..., Any],
    new_execution: Callable[[], Execution],
    valkey_server: ValkeyServer,
) -> None:
    server = service(valkey_server.url(), INTERNAL_TOKEN=INTERNAL)
    script = new_execution()
    read(server, script, "input")
    read(server, script, "input")

    revoked = server.request(
        "POST",
        f"/internal/executions/{script.id}/revoke",
        headers={"Authorization": f"Bearer {INTERNAL}"},
    )
    assert revoked.status == 200, revoked.body

    for what in ("input", "context"):
        answer = server.request("GET", f"/executions/{script.id}/{what}", headers=script.headers)
        assert (answer.status, answer.json()["code"]) == (401, "TOKEN_REVOKED")
