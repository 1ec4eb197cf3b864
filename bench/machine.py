"""The machine a benchmark ran on, as facts for the report."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.procfs import parse_status_kib

PACKAGES = (
    "cronium-runtime",
    "litestar",
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
    "msgspec",
    "valkey",
    "PyJWT",
    "aiohttp",
    "dependency-injector",
    "loguru",
    "prometheus-client",
)


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError as error:
        return f"unavailable ({error.strerror})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def git_revision(repo: Path) -> str:
    revision = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    changed = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.strip()
    return f"{revision} with uncommitted changes" if changed else revision


def machine_facts(repo: Path) -> dict[str, Any]:
    memory_kib = parse_status_kib(Path("/proc/meminfo").read_text(), "MemTotal")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        # "Valkey server v=8.0.1 sha=... malloc=... build=...", "wrk 4.1.0 [epoll] Copyright ...":
        # the version is enough.
        "valkey_server": " ".join(_first_line(["valkey-server", "--version"]).split()[:3]),
        "wrk": " ".join(_first_line(["wrk", "-v"]).split()[:2]),
        "revision": git_revision(repo),
    }
