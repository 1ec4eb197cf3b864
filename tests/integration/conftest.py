"""What every integration folder shares: `cronium-runtime serve` as a real process on a
loopback port, driven over a real socket, and real valkey-server processes."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from processes import REPO, base_environment, cli_command
from valkey_servers import ValkeyCluster, ValkeyServer, require_binary

from adapters.valkey.client import ValkeyClient, ValkeyOptions, create_client

STARTUP_DEADLINE = 15.0
STOP_DEADLINE = 10.0
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Response:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class ServerProcess:
    """One `cronium-runtime serve`; its stdout and stderr go to files, so no pipe can fill."""

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        self.env = dict(env)
        self.port = int(env["PORT"])
        self.stdout_path = workdir / "serve.stdout"
        self.stderr_path = workdir / "serve.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                cli_command("serve"),
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.returncode: int | None = None
        self.killed = False

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def request(
        self,
        method: str,
        raw_path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Response:
        """`raw_path` goes on the request line exactly as given, encoded or not."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            sent_headers = dict(headers or {})
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                sent_headers.setdefault("Content-Type", "application/json")
            connection.request(method, raw_path, body=payload, headers=sent_headers)
            answer = connection.getresponse()
            return Response(answer.status, answer.headers, answer.read())
        finally:
            connection.close()

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                raise ServerExited(self.returncode, self.stderr)
            try:
                if self.request("GET", "/health", timeout=1.0).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"cronium-runtime serve did not answer /health within {STARTUP_DEADLINE}s;"
            f" stderr:\n{self.stderr}"
        )

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM, then the exit status; killed (see `killed`) if it does not end in time."""
        if self.returncode is not None:
            return self.returncode
        self.terminate()
        try:
            self.returncode = self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.killed = True
            self.process.kill()
            self.returncode = self.process.wait(timeout=STOP_DEADLINE)
        return self.returncode

    def wait_for_stderr(self, found: Callable[[str], bool], timeout: float = 5.0) -> str:
        """The stderr text once `found` holds for it (log lines are written after the answer)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr
            if found(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)


class ServerExited(Exception):
    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"cronium-runtime serve exited with status {returncode}:\n{stderr}")
        self.stderr = stderr


StartServer = Callable[..., ServerProcess]


class Launcher:
    """Starts `serve` processes in `folder` and, at the end, stops every one it started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[ServerProcess] = []

    def start(self, **overrides: str) -> ServerProcess:
        """The base environment plus `overrides`; answers once `/health` does."""
        for attempt in range(3):
            workdir = self.folder / f"server-{len(self.started)}"
            workdir.mkdir()
            env = {**base_environment(self.folder), "HOST": HOST, "PORT": str(free_port())}
            env.update(overrides)
            server = ServerProcess(env, workdir)
            self.started.append(server)
            try:
                server.wait_until_healthy()
            except ServerExited as exited:
                # The free port was taken between the probe and the bind: try another.
                if "address already in use" in exited.stderr.lower() and attempt < 2:
                    continue
                pytest.fail(str(exited))
            return server
        raise AssertionError("unreachable")

    def stop_all(self) -> None:
        failures = []
        for server in self.started:
            if server.returncode is not None:
                continue  # stopped, and checked, by the test or by start-up
            status = server.stop()
            if server.killed:
                failures.append(f"ignored SIGTERM for {STOP_DEADLINE}s and was killed")
            elif status != 0:
                failures.append(f"status {status}; stderr:\n{server.stderr[-2000:]}")
        if failures:
            pytest.fail("cronium-runtime serve did not stop cleanly: " + "\n".join(failures))


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Starts `serve` with the base environment plus `overrides`; always stops what it started."""
    launcher = Launcher(tmp_path)
    yield launcher.start
    launcher.stop_all()


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """As `start_server`, for a server that a module's tests share."""
    launcher = Launcher(tmp_path_factory.mktemp("module-server"))
    yield launcher.start
    launcher.stop_all()


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    """The service on its embedded defaults: no secret, no Valkey, no backend."""
    return start_server()


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """The base environment with a free loopback port, for processes a test starts itself."""
    return {**base_environment(tmp_path), "HOST": HOST, "PORT": str(free_port())}


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli() -> RunCli:
    """Runs `cronium-runtime ARGS...` to completion with the given environment."""

    def run(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli_command(*args),
            env=dict(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STARTUP_DEADLINE,
            check=False,
        )

    return run


# --- real Valkey, for every folder's tests: servers and a cluster on free loopback ports

StartValkeyServer = Callable[..., ValkeyServer]
OpenClient = Callable[..., ValkeyClient]


@pytest.fixture
def valkey_server_factory(tmp_path: Path) -> Iterator[StartValkeyServer]:
    """Starts a `ValkeyServer(**options)` (password=, tls=, tls_only=, appendonly=, ...), ready.

    Every server it started is stopped at teardown, whatever the test did to it. Without
    valkey-server on the machine the test fails, never skips.
    """
    require_binary("valkey-server")
    started: list[ValkeyServer] = []

    def start(**options: Any) -> ValkeyServer:
        server = ValkeyServer(tmp_path / f"valkey-{len(started)}", **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def valkey_server(valkey_server_factory: StartValkeyServer) -> ValkeyServer:
    """A plain standalone server: no password, no TLS, no persistence."""
    return valkey_server_factory()


@pytest.fixture(scope="module")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """Three primaries on loopback with every slot assigned; shared by a module's tests,
    which should use keys of their own (creating a cluster takes a few seconds)."""
    require_binary("valkey-server")
    require_binary("valkey-cli")
    cluster = ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def open_client() -> AsyncIterator[OpenClient]:
    """`create_client(ValkeyOptions(url=..., **options))`; every client closed at teardown."""
    clients: list[ValkeyClient] = []

    def open_one(url: str, **options: Any) -> ValkeyClient:
        client = create_client(ValkeyOptions(url=url, **options))
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        await client.aclose()
