"""The processes the benchmark starts, and the stopping of every one of them.

Each child runs in a session of its own, so a Ctrl-C in the terminal reaches the harness
alone, which then stops the children in order (SIGTERM, then SIGKILL after a deadline).
Each is also told by the kernel to get SIGTERM should the harness itself die (prctl
PR_SET_PDEATHSIG), so that not even a SIGKILL of the harness leaves a server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0
START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def free_port() -> int:
    """A loopback port free right now; a start that loses it to another process retries."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the harness dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Child:
    """A process the harness started; its stdout and stderr go to `log`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started_at: float  # time.monotonic() just before the start

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def truncate_log(self) -> None:
        """Empty the log between runs (the service writes an access line per request); the
        child writes with O_APPEND, so it goes on at the new end."""
        with contextlib.suppress(FileNotFoundError):
            self.log.write_bytes(b"")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after `STOP_DEADLINE_S`; the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_DEADLINE_S)
        return self.popen.returncode


def spawn(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path = REPO
) -> Child:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        started_at = time.monotonic()
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - the harness starts no threads
        )
    return Child(name=name, popen=popen, log=log, started_at=started_at)


class Children:
    """Every child started through it is stopped when it closes, the last started first."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def add(self, child: Child) -> Child:
        self._children.append(child)
        return child

    def stop(self, child: Child) -> int:
        status = child.stop()
        if child in self._children:
            self._children.remove(child)
        return status

    def close(self) -> None:
        while self._children:
            child = self._children.pop()
            try:
                child.stop()
            except Exception as error:  # keep stopping the others
                print(f"bench: could not stop {child.name} ({child.pid}): {error}", file=sys.stderr)


def wait_until(
    ready: Callable[[], bool], child: Child, what: str, deadline_s: float = START_DEADLINE_S
) -> None:
    """Poll `ready` until it holds; fail when `child` exits or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise ChildExited(child)
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.005)
    raise BenchError(
        f"{what} did not come up within {deadline_s:g} s; its log:\n{child.log_tail()}"
    )


class ChildExited(BenchError):
    def __init__(self, child: Child) -> None:
        self.child = child
        self.port_taken = "address already in use" in child.log_tail(200).lower()
        super().__init__(
            f"{child.name} exited with status {child.popen.returncode}; its log:\n"
            f"{child.log_tail()}"
        )


# -------------------------------------------------------------------------------- probes


def health_status(port: int, timeout: float = 1.0) -> int:
    """The status of `GET /health`, over a fresh connection (raw, for the least overhead
    while a cold start is timed)."""
    with socket.create_connection((HOST, port), timeout=timeout) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        head = connection.recv(64)
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    timeout: float = 10.0,
) -> Answer:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=headers)
        answer = connection.getresponse()
        return Answer(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


def valkey_ping(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1.0) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")


# ----------------------------------------------------------------------------- starting


def start_with_retries(
    start: Callable[[int], Child], ready: Callable[[Child, int], None]
) -> tuple[Child, int]:
    """Start on a free port, again on another one when the first was taken meanwhile."""
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        child = start(port)
        try:
            ready(child, port)
        except ChildExited as exited:
            if exited.port_taken and attempt < START_ATTEMPTS - 1:
                continue
            raise
        return child, port
    raise AssertionError("unreachable")
