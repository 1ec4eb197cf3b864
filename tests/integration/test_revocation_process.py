"""Revocation on one `cronium-runtime serve` without Valkey: the local store keeps it, so
the revoked execution's tokens stay refused after the process restarts; others pass."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import RunCli, ServerProcess, StartServer

SECRET = "integration-secret-at-least-32-bytes-long"
INTERNAL = "integration-internal-token-0123456789"


def token_for(run_cli: RunCli, env: dict[str, str], execution_id: str) -> dict[str, str]:
    done = run_cli(env, "token", "--execution", execution_id)
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {done.stdout.strip()}"}


def listing(server: ServerProcess, execution_id: str, headers: dict[str, str]) -> tuple[int, str]:
    answer = server.request("GET", f"/executions/{execution_id}/variables", headers=headers)
    return answer.status, answer.json().get("code", "")


def test_a_revocation_survives_a_restart_of_the_single_process(
    start_server: StartServer, run_cli: RunCli, environment: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    settings = {"JWT_SECRET": SECRET, "INTERNAL_TOKEN": INTERNAL, "STORE_PATH": str(store)}
    cli_env = {**environment, **settings}
    revoked, other = token_for(run_cli, cli_env, "e1"), token_for(run_cli, cli_env, "e2")
    first = start_server(**settings)
    assert listing(first, "e1", revoked) == (200, "")

    answer = first.request(
        "POST", "/internal/executions/e1/revoke", headers={"Authorization": f"Bearer {INTERNAL}"}
    )

    assert (answer.status, answer.json()) == (200, {"success": True})
    assert listing(first, "e1", revoked) == (401, "TOKEN_REVOKED")
    assert first.stop() == 0

    second = start_server(**settings)
    assert listing(second, "e1", revoked) == (401, "TOKEN_REVOKED")
    assert listing(second, "e1", token_for(run_cli, cli_env, "e1")) == (401, "TOKEN_REVOKED")
    assert listing(second, "e2", other) == (200, "")
    with sqlite3.connect(store / "runtime.db") as connection:
        events = connection.execute(
            "SELECT execution_id FROM audit_events WHERE action = 'revoke'"
        ).fetchall()
    assert events == [("e1",)]


def test_without_an_internal_token_the_revoke_route_does_not_exist(
    start_server: StartServer,
) -> None:
    server = start_server(JWT_SECRET=SECRET)

    answer = server.request(
        "POST", "/internal/executions/e1/revoke", headers={"Authorization": f"Bearer {INTERNAL}"}
    )

    assert (answer.status, answer.json()["code"]) == (404, "NOT_FOUND")
