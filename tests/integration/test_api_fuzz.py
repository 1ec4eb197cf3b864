"""Schemathesis against the real service: every answer to a request the API document
allows is a documented one, and none is a 5xx (the checks are listed in api_fuzz.toml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import RunCli, StartServer

CONFIG = Path(__file__).with_name("api_fuzz.toml")
SECRET = "fuzzer-secret-that-is-at-least-32-bytes-long"
INTERNAL_TOKEN = "fuzzer-internal-token-at-least-32-bytes"
# A fixed seed makes a failure reproducible; FUZZ_SEED picks another for a longer hunt.
SEED = os.environ.get("FUZZ_SEED", "20261128")
RUN_DEADLINE = 300.0


def schemathesis_command() -> list[str]:
    script = Path(sys.executable).with_name("schemathesis")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "schemathesis.cli"]


def test_schemathesis_finds_no_answer_outside_the_api_document(
    start_server: StartServer, run_cli: RunCli, tmp_path: Path
) -> None:
    server = start_server(
        JWT_SECRET=SECRET,
        INTERNAL_TOKEN=INTERNAL_TOKEN,
        # High enough that no 429 hides another answer.
        RATE_LIMIT_PER_MIN="1000000",
        TOOLS_DRY_RUN="true",
    )
    executions = []
    for _ in range(2):
        created = run_cli(server.env, "executions", "create", "--json", "--input", '{"n": 1}')
        assert created.returncode == 0, created.stderr
        executions.append(json.loads(created.stdout))
    script, revoked = executions
    # Schemathesis alone in its environment: not measured by coverage, nothing of ours.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CRONIUM_EXECUTION_ID": script["executionId"],
        "CRONIUM_EXECUTION_TOKEN": script["token"],
        "CRONIUM_REVOKED_EXECUTION_ID": revoked["executionId"],
        "CRONIUM_INTERNAL_TOKEN": INTERNAL_TOKEN,
    }

    started = time.monotonic()
    run = subprocess.run(
        [
            *schemathesis_command(),
            "--config-file",
            str(CONFIG),
            "run",
            f"http://127.0.0.1:{server.port}/schema/openapi.json",
            "--seed",
            SEED,
            "--no-color",
        ],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE,
        check=False,
    )
    elapsed = time.monotonic() - started

    report = (
        f"schemathesis took {elapsed:.0f} s, exit {run.returncode}:\n{run.stdout}\n{run.stderr}"
    )
    assert run.returncode == 0, report
    # Every operation of the document was tested, the internal one included.
    document = server.request("GET", "/schema/openapi.json").json()
    operations = sum(len(item) for item in document["paths"].values())
    assert "/internal/executions/{execution_id}/revoke" in document["paths"]
    assert f"Tested: {operations}" in run.stdout, report
