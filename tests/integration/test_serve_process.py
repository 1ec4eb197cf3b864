"""`cronium-runtime serve` as a process: start-up, the demo line, tokens, logs, shutdown."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
import pytest

if TYPE_CHECKING:
    from conftest import RunCli, ServerProcess, StartServer

SECRET = "integration-secret-at-least-32-bytes-long"
DEMO_PREFIX = "Try it: curl "


def demo_line(server: ServerProcess) -> str:
    lines = [line for line in server.stdout.splitlines() if line.startswith(DEMO_PREFIX)]
    assert len(lines) == 1, server.stdout
    return lines[0]


def parse_demo_line(line: str) -> tuple[str, str]:
    """The token and the URL of `Try it: curl -s -H 'Authorization: Bearer T' URL`."""
    words = shlex.split(line.removeprefix("Try it: "))
    assert words[0] == "curl"
    header = words[words.index("-H") + 1]
    scheme, _, token = header.removeprefix("Authorization: ").partition(" ")
    assert scheme == "Bearer"
    return token, words[-1]


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        records.append(record)
    return records


def message_of(record: dict[str, Any]) -> str:
    # A flat object ({"time", "level", "message", ...fields}) or loguru's own serialisation
    # ({"text", "record": {"message", "extra": {...}}}): the tests accept either.
    return str(record["message"] if "message" in record else record["record"]["message"])


def field_of(record: dict[str, Any], name: str) -> Any:
    if name in record:
        return record[name]
    return record.get("record", {}).get("extra", {}).get(name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- start-up ---------------------------------------------------------------------------------


def test_health_answers_with_the_package_version(server: ServerProcess) -> None:
    answer = server.request("GET", "/health")

    assert answer.status == 200
    body = answer.json()
    assert body["status"] == "healthy"
    assert body["version"] == version("cronium-runtime")
    assert body["time"].endswith("Z")


def test_without_a_secret_the_demo_curl_line_answers_an_empty_list(server: ServerProcess) -> None:
    token, url = parse_demo_line(demo_line(server))
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", server.port)

    answer = server.request("GET", parts.path, headers=bearer(token))

    assert answer.status == 200
    assert answer.json() == {"success": True, "data": []}


def test_the_logs_never_carry_the_demo_token_or_the_secret(
    server: ServerProcess, tmp_path: Path
) -> None:
    token, url = parse_demo_line(demo_line(server))
    secret = (tmp_path / "data" / "cronium-runtime" / "dev-jwt-secret").read_text().strip()
    path = urlsplit(url).path
    server.request("GET", path, headers=bearer(token))
    server.request("PUT", f"{path}/greeting", body={"value": "hello"}, headers=bearer(token))
    server.request("GET", path, headers=bearer(token + "x"))  # refused: a 401 is logged too

    assert server.stop() in (0, -signal.SIGTERM)
    logs = server.stderr
    assert "Shutting down" in logs  # the whole run, shutdown included, is in the text
    assert token not in logs
    assert secret not in logs
    assert "Try it" not in logs


def test_with_a_jwt_secret_no_demo_line_is_printed(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(JWT_SECRET=SECRET)
    server.request("GET", "/health")

    assert DEMO_PREFIX not in server.stdout
    assert server.stdout == ""
    assert not (tmp_path / "data" / "cronium-runtime" / "dev-jwt-secret").exists()


@pytest.mark.parametrize("secret", [None, SECRET], ids=["development-secret", "jwt-secret"])
def test_a_token_from_the_cli_opens_its_execution(
    start_server: StartServer, run_cli: RunCli, secret: str | None
) -> None:
    server = start_server(**({"JWT_SECRET": secret} if secret else {}))

    minted = run_cli(server.env, "token", "--execution", "e1")

    assert minted.returncode == 0, minted.stderr
    assert minted.stderr == ""
    (token,) = minted.stdout.splitlines()
    answer = server.request("GET", "/executions/e1/variables", headers=bearer(token))
    assert answer.status == 200
    assert answer.json() == {"success": True, "data": []}
    other = server.request("GET", "/executions/e2/variables", headers=bearer(token))
    assert other.status == 403
    assert other.json()["code"] == "EXECUTION_MISMATCH"


def test_a_token_signed_with_another_secret_is_refused(start_server: StartServer) -> None:
    server = start_server(JWT_SECRET=SECRET)
    forged = jwt.encode(
        {"executionId": "e1", "userId": "local", "exp": int(time.time()) + 60},
        "some-other-secret-also-32-bytes-long-xx",
        algorithm="HS256",
    )

    answer = server.request("GET", "/executions/e1/variables", headers=bearer(forged))

    assert answer.status == 401
    assert answer.json()["code"] == "TOKEN_INVALID"


def test_a_settings_error_stops_serve_before_it_listens(
    environment: dict[str, str], run_cli: RunCli
) -> None:
    environment["PORT"] = "tcp://10.0.0.1:8081"

    started = time.monotonic()
    finished = run_cli(environment, "serve")

    assert time.monotonic() - started < 15
    assert finished.returncode == 1
    assert finished.stdout == ""
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert "PORT" in lines[0]
    assert "tcp://10.0.0.1:8081" in lines[0]
    assert "Uvicorn running" not in finished.stderr


def test_the_console_script_prints_its_version_and_exits_zero(
    environment: dict[str, str], run_cli: RunCli
) -> None:
    finished = run_cli(environment, "--version")

    assert finished.returncode == 0
    assert finished.stdout == f"cronium-runtime {version('cronium-runtime')}\n"
    assert finished.stderr == ""


# --- shutdown ---------------------------------------------------------------------------------


def test_sigterm_while_idle_ends_the_process_with_a_shutdown_log_line(
    server: ServerProcess,
) -> None:
    started = time.monotonic()
    server.stop()

    assert not server.killed
    assert time.monotonic() - started < 10
    messages = [message_of(record) for record in json_lines(server.stderr)]
    assert any("shutting down" in message.lower() for message in messages), messages
    assert "Application shutdown complete." in messages


def test_sigterm_exits_with_status_zero(server: ServerProcess) -> None:
    assert server.stop() == 0


def test_on_sigterm_readiness_drains_while_requests_are_still_served(
    start_server: StartServer,
) -> None:
    server = start_server(JWT_SECRET=SECRET, DRAIN_DELAY="3s")
    assert server.request("GET", "/health/ready").status == 200

    server.terminate()
    time.sleep(0.5)

    try:
        ready = server.request("GET", "/health/ready", timeout=2.0)
        alive = server.request("GET", "/health", timeout=2.0)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.fail(f"the service stopped listening during the drain delay: {error!r}")
    assert ready.status == 503
    assert ready.json()["status"] == "unavailable"
    assert alive.status == 200


# --- logs -------------------------------------------------------------------------------------


def test_json_logs_are_one_object_per_line_with_an_access_line_per_request(
    start_server: StartServer,
) -> None:
    server = start_server(JWT_SECRET=SECRET)
    ids = ["it-123", "it-124", "it-125"]

    answers = [server.request("GET", "/health", headers={"X-Request-ID": rid}) for rid in ids]

    assert [answer.headers.get("X-Request-ID") for answer in answers] == ids
    server.wait_for_stderr(lambda text: all(rid in text for rid in ids))
    records = json_lines(server.stderr)
    for rid in ids:
        access = [record for record in records if field_of(record, "request_id") == rid]
        assert len(access) == 1, rid
        message = message_of(access[0])
        assert "GET" in message
        assert "/health" in message
        assert "200" in message


def test_an_unusable_request_id_is_replaced_in_the_answer_and_the_log(
    start_server: StartServer,
) -> None:
    server = start_server(JWT_SECRET=SECRET)

    answer = server.request("GET", "/health", headers={"X-Request-ID": "bad id with spaces"})

    generated = answer.headers["X-Request-ID"]
    assert generated != "bad id with spaces"
    server.wait_for_stderr(lambda text: generated in text)
    assert "bad id with spaces" not in server.stderr


def test_the_text_log_format_gives_plain_lines(start_server: StartServer) -> None:
    server = start_server(JWT_SECRET=SECRET, LOG_FORMAT="text")

    server.request("GET", "/health", headers={"X-Request-ID": "it-123"})

    text = server.wait_for_stderr(lambda text: "it-123" in text)
    lines = text.splitlines()
    assert lines
    for line in lines:
        with pytest.raises(ValueError):
            json.loads(line)
    assert any("it-123" in line and "/health" in line for line in lines)
