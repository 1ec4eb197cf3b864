"""Revocation across real `cronium-runtime serve` processes sharing one Valkey, each with a
local store of its own (as on two machines): revoked through one, refused by the other
within a second (`auth.revocationRefresh` 500ms), by a process started later at once, and
no other execution touched."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from service_kit import SECRET, RunCli, StartServer
from valkey_servers import ValkeyServer

INTERNAL = "integration-internal-token-0123456789"
RULE = 1.0  # seconds within which every process refuses a revoked execution's tokens
DELIVERY = 10.0  # seconds for a shipper to deliver an audit event on a loaded machine


def token_for(run_cli: RunCli, env: dict[str, str], execution_id: str) -> dict[str, str]:
    done = run_cli(env, "token", "--execution", execution_id)
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {done.stdout.strip()}"}


def answer_of(server: Any, execution_id: str, headers: dict[str, str]) -> tuple[int, str]:
    answer = server.request("GET", f"/executions/{execution_id}/variables", headers=headers)
    return answer.status, answer.json().get("code", "")


def revoke(server: Any, execution_id: str) -> None:
    answer = server.request(
        "POST",
        f"/internal/executions/{execution_id}/revoke",
        headers={"Authorization": f"Bearer {INTERNAL}"},
    )
    assert (answer.status, answer.json()) == (200, {"success": True}), answer.body


def test_a_revocation_through_one_process_is_refused_by_another_within_a_second(
    start_server: StartServer,
    run_cli: RunCli,
    environment: dict[str, str],
    valkey_server: ValkeyServer,
    tmp_path: Path,
) -> None:
    def settings(machine: str) -> dict[str, str]:
        return {
            "JWT_SECRET": SECRET,
            "INTERNAL_TOKEN": INTERNAL,
            "VALKEY_URL": valkey_server.url(),
            "STORE_PATH": str(tmp_path / machine),
        }

    cli_env = {**environment, "JWT_SECRET": SECRET}
    revoked, other = token_for(run_cli, cli_env, "e1"), token_for(run_cli, cli_env, "e2")
    a, b = start_server(**settings("machine-a")), start_server(**settings("machine-b"))
    assert answer_of(a, "e1", revoked) == (200, "")
    assert answer_of(b, "e1", revoked) == (200, "")  # b has verified and cached the token

    revoke(a, "e1")
    revoked_at = time.monotonic()

    assert answer_of(a, "e1", revoked) == (401, "TOKEN_REVOKED")  # its own: at once
    seen = answer_of(b, "e1", revoked)
    while seen != (401, "TOKEN_REVOKED") and time.monotonic() - revoked_at < RULE:
        time.sleep(0.02)
        seen = answer_of(b, "e1", revoked)
    assert seen == (401, "TOKEN_REVOKED"), f"b still answers {seen} after {RULE} s"
    assert answer_of(b, "e2", other) == (200, "")
    assert answer_of(a, "e2", other) == (200, "")

    # A process that starts after the revocation reads it before it serves.
    c = start_server(**settings("machine-c"))
    assert answer_of(c, "e1", revoked) == (401, "TOKEN_REVOKED")
    assert answer_of(c, "e2", other) == (200, "")

    # The revocation is audited once. The outbox is Valkey's stream, which every process's
    # shipper reads: the event reaches the store sink of whichever process claimed it.
    def revoke_events() -> list[Any]:
        events = []
        for machine in ("machine-a", "machine-b", "machine-c"):
            with sqlite3.connect(tmp_path / machine / "runtime.db") as connection:
                events += connection.execute(
                    "SELECT execution_id FROM audit_events WHERE action = 'revoke'"
                ).fetchall()
        return events

    delivered_by = time.monotonic() + DELIVERY
    while not revoke_events() and time.monotonic() < delivered_by:
        time.sleep(0.05)
    assert revoke_events() == [("e1",)]
