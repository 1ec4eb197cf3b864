"""What tests that start `cronium-runtime` processes share, importable by name (the
conftest modules of several folders would all be `conftest`)."""

from __future__ import annotations

import http.client
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli_command(*args: str) -> list[str]:
    """The console script beside the running interpreter, else the module."""
    script = Path(sys.executable).with_name("cronium-runtime")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "entrypoints.cli.main", *args]


def base_environment(tmp_path: Path) -> dict[str, str]:
    """PATH, HOME and the data folder; nothing else from this machine.

    COVERAGE_* is the exception: under `coverage run` it is how the child is measured. An
    empty CONFIG_FILE keeps a config.yaml in the working directory (the repository root, which
    coverage's relative `source` needs) from being read. DRAIN_DELAY=0s keeps every stop from
    waiting the 5 s default drain; the drain test sets its own.
    """
    config = tmp_path / "empty-config.yaml"
    config.touch()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "CONFIG_FILE": str(config),
        "DRAIN_DELAY": "0s",
    }
    env.update({name: value for name, value in os.environ.items() if name.startswith("COVERAGE_")})
    return env


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Polls `check` until it holds (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def owner_of(connection: http.client.HTTPConnection, server_port: int, pids: list[int]) -> int:
    """Which of `pids` holds the server side of this open loopback connection (from /proc)."""
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
            if int(local, 16) == server_port and int(remote, 16) == client_port:
                inodes.add(f"socket:[{fields[9]}]")
    owners = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    owners.add(pid)
            except OSError:
                continue
    assert len(owners) == 1, (client_port, inodes, owners)
    return owners.pop()
