"""The operations tests' world: a real valkey-server, executions made by the CLI in a store
the served processes share, and a webhook that holds its answer until told."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_kit import SECRET, Execution, HeldWebhook, held_webhook
from valkey_servers import ValkeyServer, require_binary


@pytest.fixture
def valkey_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A plain standalone server, stopped at teardown."""
    require_binary("valkey-server")
    server = ValkeyServer(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """The one store that the served processes and the CLI of a test share."""
    return tmp_path / "store"


@pytest.fixture
def cli_env(environment: dict[str, str], store_path: Path) -> dict[str, str]:
    return {**environment, "JWT_SECRET": SECRET, "STORE_PATH": str(store_path)}


@pytest.fixture
def new_execution(run_cli: Callable[..., Any], cli_env: dict[str, str]) -> Callable[[], Execution]:
    def create() -> Execution:
        done = run_cli(cli_env, "executions", "create", "--json")
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)
        return Execution(created["executionId"], created["token"])

    return create


@pytest.fixture
def webhook() -> Iterator[HeldWebhook]:
    with held_webhook() as hook:
        yield hook
