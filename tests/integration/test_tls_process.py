"""`cronium-runtime serve` over HTTPS (security.enableTls) with a certificate made in the test."""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from processes import REPO, cli_command
from valkey_servers import TlsFiles, make_tls_files

if TYPE_CHECKING:
    from conftest import RunCli

SECRET = "integration-secret-at-least-32-bytes-long"
HOST = "127.0.0.1"
DEADLINE = 15.0


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def tls_env(environment: dict[str, str], tls: TlsFiles) -> dict[str, str]:
    return {
        **environment,
        "JWT_SECRET": SECRET,
        "ENABLE_TLS": "true",
        "TLS_CERT": str(tls.cert),
        "TLS_KEY": str(tls.key),
    }


def verified_context(tls: TlsFiles) -> ssl.SSLContext:
    """A client context that trusts the test's CA only, and checks the host name."""
    return ssl.create_default_context(cafile=str(tls.ca_cert))


@pytest.fixture
def https_server(tls_env: dict[str, str], tls: TlsFiles, tmp_path: Path) -> Iterator[int]:
    """`serve` with TLS on; its port once it answers /health over HTTPS; stopped at the end."""
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            cli_command("serve"),
            env=tls_env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    port = int(tls_env["PORT"])
    try:
        deadline = time.monotonic() + DEADLINE
        while get(port, "/health", verified_context(tls)) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"serve did not answer over HTTPS:\n{(tmp_path / 'serve.log').read_text()}"
                )
            time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=DEADLINE)
            pytest.fail("serve ignored SIGTERM")
        assert status == 0, (tmp_path / "serve.log").read_text()


def get(
    port: int, path: str, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> int | None:
    """The status of an HTTPS GET, None when no answer came."""
    connection = http.client.HTTPSConnection(HOST, port, timeout=5, context=context)
    try:
        connection.request("GET", path, headers=headers or {})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def test_the_service_answers_over_https_with_the_configured_certificate(
    https_server: int, tls: TlsFiles, tls_env: dict[str, str], run_cli: RunCli
) -> None:
    created = run_cli(tls_env, "executions", "create", "--json")
    assert created.returncode == 0, created.stderr
    execution = json.loads(created.stdout)
    auth = {"Authorization": f"Bearer {execution['token']}"}

    status = get(
        https_server, f"/executions/{execution['executionId']}/input", verified_context(tls), auth
    )

    assert status == 200
    assert execution["apiUrl"] == f"https://{HOST}:{https_server}"


def test_a_client_that_does_not_trust_the_certificate_is_not_served(https_server: int) -> None:
    assert get(https_server, "/health", ssl.create_default_context()) is None


def test_plain_http_on_the_tls_port_is_not_served(https_server: int) -> None:
    connection = http.client.HTTPConnection(HOST, https_server, timeout=5)
    try:
        connection.request("GET", "/health")
        status: int | None = connection.getresponse().status
    except (OSError, http.client.HTTPException):
        status = None
    finally:
        connection.close()

    assert status != 200


def another_key(folder: Path) -> Path:
    return make_tls_files(folder).key


@pytest.mark.parametrize(
    ("setting", "broken", "expected"),
    [
        ("TLS_CERT", lambda folder: folder / "missing.pem", "No such file or directory"),
        ("TLS_KEY", lambda folder: folder / "missing.pem", "No such file or directory"),
        ("TLS_CERT", lambda folder: folder, "Is a directory"),
        ("TLS_CERT", lambda folder: folder / "garbage.pem", "not a PEM certificate"),
        ("TLS_KEY", another_key, "KEY_VALUES_MISMATCH"),
    ],
    ids=["missing cert", "missing key", "cert is a folder", "cert not PEM", "key of another cert"],
)
def test_a_certificate_or_key_that_cannot_be_used_stops_start_up_with_one_line(
    tls_env: dict[str, str],
    run_cli: RunCli,
    setting: str,
    broken: Callable[[Path], Path],
    expected: str,
) -> None:
    folder = Path(tls_env["HOME"]) / "broken"
    folder.mkdir()
    (folder / "garbage.pem").write_text("not a certificate\n")
    tls_env[setting] = str(broken(folder))

    finished = run_cli(tls_env, "serve")

    assert finished.returncode == 1
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert setting in lines[0]
    assert expected in lines[0]
    assert "Traceback" not in finished.stderr
    assert finished.stdout == ""
