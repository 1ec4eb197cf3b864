"""What tests that start `cronium-runtime` processes share, importable by name (the
conftest modules of several folders would all be `conftest`)."""

from __future__ import annotations

import os
import sys
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
