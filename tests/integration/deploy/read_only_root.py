"""The installed service run the way the image runs it, without a container engine.

bubblewrap shows the process this machine's root read-only (`--ro-bind / /`), a fresh tmpfs
on /tmp and a writable data folder, nothing else writable; the process runs as the image's
numeric user with no capabilities, and with the image's environment, in which the image's
paths (its data volume, its venv, its working directory) are moved to the test's own. A write
anywhere else fails with EROFS, as it would in a container with a read-only root.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from image_recipe import ImageRecipe
from processes import REPO

HOST = "127.0.0.1"
STARTUP_DEADLINE = 20.0
STOP_DEADLINE = 15.0
COMMAND_TIMEOUT = 20.0
SANDBOX_TMP = Path("/tmp")  # the sandbox's own tmpfs


def require_bwrap() -> str:
    """bwrap's path; fails (never skips) when it is missing, naming the fix."""
    found = shutil.which("bwrap")
    if found is None:
        pytest.fail("bwrap is missing: ./dev test installs it (Debian package bubblewrap)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class ReadOnlyRoot:
    """Runs commands with the image's environment in a read-only view of this machine."""

    def __init__(self, recipe: ImageRecipe, folder: Path) -> None:
        self.recipe = recipe
        self.bwrap = require_bwrap()
        # The image's data volume and working directory, here; the venv is the running one.
        self.data_folder = folder / "data"
        self.workdir = folder / "workdir"
        self.data_folder.mkdir(mode=0o700)
        self.workdir.mkdir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            # Owned by the image's user, as the image's `install -d -o 10001` makes it.
            os.chown(self.data_folder, recipe.uid, recipe.gid)
        self.moved = {
            recipe.data_folder: str(self.data_folder),
            recipe.venv: sys.prefix,
            recipe.workdir: str(self.workdir),
        }

    @property
    def _code(self) -> tuple[Path, ...]:
        return (Path(sys.base_prefix), Path(sys.prefix), REPO)

    def environment(self, **overrides: str) -> dict[str, str]:
        """The image's ENV with its paths moved here, then `overrides`; nothing from this
        process (coverage's variables neither: the sandboxed processes cannot write coverage
        data into the read-only checkout, so they are not measured)."""
        env = {name: self.move(value) for name, value in self.recipe.env.items()}
        env.update(overrides)
        return env

    def move(self, value: str) -> str:
        for image_path, here in self.moved.items():
            value = _replace_path(value, image_path, here)
        return value

    def command(self, argv: list[str], *, info_fd: int | None = None) -> list[str]:
        """The bwrap command line that runs `argv` as the image's user."""
        uid, gid = str(self.recipe.uid), str(self.recipe.gid)
        args = [self.bwrap, "--die-with-parent", "--ro-bind", "/", "/"]
        args += ["--dev", "/dev", "--proc", "/proc"]
        # As a container runtime's tmpfs /tmp is: world-writable and sticky.
        args += ["--perms", "1777", "--tmpfs", str(SANDBOX_TMP)]
        # The interpreter, the venv and the checkout (its `src`, installed editable), read
        # only; a checkout under /tmp (a fresh clone in CI) would be hidden by the tmpfs.
        for path in self._code:
            if path.is_relative_to(SANDBOX_TMP):
                args += self._mount(path, "--ro-bind")
        args += self._mount(self.data_folder, "--bind")
        args += self._mount(self.workdir, "--ro-bind")
        args += ["--chdir", str(self.workdir)]
        if info_fd is not None:
            args += ["--info-fd", str(info_fd)]
        if not self.as_root:
            # An unprivileged caller: a user namespace maps the image's ids to the caller's.
            return [*args, "--unshare-user", "--uid", uid, "--gid", gid, "--", *argv]
        # As root, the process must not be root in disguise (a user namespace would map it to
        # uid 0 outside, the owner of most files): bwrap keeps only the capabilities to change
        # ids, and setpriv gives them up for the image's ids before running `argv`.
        args += self._reveal(*(path for path in self._code if not path.is_relative_to(SANDBOX_TMP)))
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
        drop = ["setpriv", "--reuid", uid, "--regid", gid, "--clear-groups"]
        drop += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        return [*args, *drop, *argv]

    def run(self, env: Mapping[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(list(argv)),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def start(self, env: Mapping[str, str], *argv: str, logs: Path) -> SandboxedProcess:
        return SandboxedProcess(self, env, list(argv), logs)

    @staticmethod
    def _mount(path: Path, kind: str) -> list[str]:
        args: list[str] = []
        if path.is_relative_to(SANDBOX_TMP):
            # In the sandbox's fresh /tmp the parents do not exist yet: bwrap would make them
            # 0700 root, which the image's user could not pass through.
            for parent in reversed(path.relative_to(SANDBOX_TMP).parents[:-1]):
                args += ["--perms", "0755", "--dir", str(SANDBOX_TMP / parent)]
        return [*args, kind, str(path), str(path)]

    @staticmethod
    def _reveal(*paths: Path) -> list[str]:
        """What makes `paths` reachable for the image's user when a parent is closed to others
        (a Python built under /root, mode 0700): a read-only tmpfs over that parent holding
        only `paths`. In the image they live in /usr/local and /opt, open to everyone."""
        args: list[str] = []
        hidden: list[Path] = []
        for path in paths:
            closed = next(
                (
                    parent
                    for parent in [*reversed(path.parents), path]
                    if not parent.stat().st_mode & stat.S_IXOTH
                ),
                None,
            )
            if closed is None:
                continue
            if closed not in hidden:
                hidden.append(closed)
                args += ["--tmpfs", str(closed)]
            for parent in reversed(path.relative_to(closed).parents[:-1]):
                args += ["--perms", "0755", "--dir", str(closed / parent)]
            args += ["--ro-bind", str(path), str(path)]
        for folder in hidden:
            args += ["--remount-ro", str(folder)]
        return args


class PortTaken(Exception):
    """The free port was taken between the probe and the bind."""


class SandboxedProcess:
    """One long-running command in the sandbox, its output in files so no pipe can fill."""

    def __init__(self, root: ReadOnlyRoot, env: Mapping[str, str], argv: list[str], logs: Path):
        self.port = int(env["PORT"]) if "PORT" in env else None
        self.stdout_path = logs / "stdout"
        self.stderr_path = logs / "stderr"
        logs.mkdir(parents=True, exist_ok=True)
        info_read, info_write = os.pipe()
        try:
            with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
                self.process = subprocess.Popen(
                    root.command(argv, info_fd=info_write),
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    pass_fds=(info_write,),
                )
            os.close(info_write)
            # bwrap does not pass signals on, so SIGTERM goes to the sandboxed process itself
            # (the same pid as setpriv's, which execs it), whose status bwrap then exits with.
            self.child_pid = _child_pid(info_read, self.process, self.stderr_path)
        finally:
            os.close(info_read)
        self.returncode: int | None = None

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def request(
        self, method: str, path: str, *, body: Any = None, token: str | None = None
    ) -> Answer:
        assert self.port is not None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(HOST, self.port, timeout=5.0)
        try:
            connection.request(method, path, body=payload, headers=headers)
            answer = connection.getresponse()
            return Answer(answer.status, answer.read())
        finally:
            connection.close()

    def wait_until_healthy(self) -> None:
        """Returns once /health answers; PortTaken if another process bound the port first."""
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                if "address already in use" in self.stderr.lower():
                    raise PortTaken
                pytest.fail(f"the sandboxed server exited with {self.returncode}:\n{self.stderr}")
            try:
                if self.request("GET", "/health").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"no answer on /health within {STARTUP_DEADLINE} s:\n{self.stderr}")

    def wait(self) -> int:
        """The exit status of a process that ends by itself."""
        try:
            self.returncode = self.process.wait(timeout=STARTUP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"still running after {STARTUP_DEADLINE} s:\n{self.stderr}")
        return self.returncode

    def stop(self) -> int:
        """SIGTERM, then the exit status; SIGKILL (and a failure) if it does not end in time."""
        if self.returncode is not None:
            return self.returncode
        _signal(self.child_pid, signal.SIGTERM)
        try:
            self.returncode = self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            # --die-with-parent does not outlive setpriv's change of ids: kill both.
            _signal(self.child_pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE)
            pytest.fail(f"ignored SIGTERM for {STOP_DEADLINE} s:\n{self.stderr}")
        return self.returncode


def _child_pid(info: int, process: subprocess.Popen[bytes], stderr: Path) -> int:
    """The sandboxed process's pid, from the JSON bwrap writes to --info-fd."""
    text = b""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        ready, _, _ = select.select([info], [], [], 0.1)
        if ready:
            chunk = os.read(info, 4096)
            text += chunk
            try:
                return int(json.loads(text)["child-pid"])
            except ValueError:
                if not chunk:
                    break
        elif process.poll() is not None:
            break
    process.kill()
    process.wait()
    pytest.fail(
        f"bwrap gave no child pid (exit status {process.returncode}; {text!r}):\n"
        + stderr.read_text(encoding="utf-8", errors="replace")
    )


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _replace_path(value: str, old: str, new: str) -> str:
    """`old` replaced by `new` where it is a whole path or a leading part of one."""
    parts = value.split(":")
    return ":".join(
        new + part[len(old) :] if part == old or part.startswith(old + "/") else part
        for part in parts
    )
