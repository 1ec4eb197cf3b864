"""The command-line tests run with none of the machine's settings and a data folder of
their own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoints.settings import SETTINGS


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the machine leaks in; the data folder is this test's own."""
    names = {name for setting in SETTINGS for name in setting.variables}
    names |= {"CONFIG_FILE", "RUNTIME_CONFIG_FILE", "PROMETHEUS_MULTIPROC_DIR"}
    names |= {name for name in os.environ if name.startswith(("RUNTIME_", "JWT_"))}
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    # A config.yaml in the working directory would be read: work where there is none.
    monkeypatch.chdir(tmp_path)
    return tmp_path
