"""The scripts in examples/, each run as the README says, through `cronium-runtime run --json`.

Each example makes the calls the Cronium helpers make, directly over the API: it reads its
input and the variable `runs`, writes `runs` + 1, sets its output and condition, and sends a
Slack message (dry run). Real processes on a bare machine: only PATH, HOME and XDG_DATA_HOME
(in the test's folder) come in, plus what conftest.py's `environment` sets for every process.

node, curl and jq are not optional here: `./dev test` installs them, so a missing one fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 30.0
INPUT = '{"name": "Ada"}'
SUMMARY_KEYS = {
    "executionId",
    "exitCode",
    "durationMs",
    "output",
    "condition",
    "variables",
    "toolActions",
    "auditEvents",
}
# input, get runs, put runs, output, condition, tool action.
CALLS_PER_RUN = 6

EXAMPLES = [
    pytest.param(("python3", "examples/hello.py"), ("python3",), id="python"),
    pytest.param(("node", "examples/hello.mjs"), ("node",), id="node"),
    pytest.param(("bash", "examples/hello.sh"), ("bash", "curl", "jq"), id="bash"),
]


def cli_command(*args: str) -> list[str]:
    """The console script beside the running interpreter, else the module."""
    script = Path(sys.executable).with_name("cronium-runtime")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "entrypoints.cli.main", *args]


def require_programs(programs: tuple[str, ...], path: str) -> None:
    """Fail, never skip, when the machine lacks what an example needs."""
    missing = [program for program in programs if shutil.which(program, path=path) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found on PATH; `./dev test` installs node, curl and jq"
            " (Debian packages nodejs, curl, jq) when they are missing"
        )
    if "node" in programs:
        found = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=False, env={"PATH": path}
        )
        major = re.match(r"v(\d+)\.", found.stdout.strip())
        if found.returncode != 0 or major is None or int(major.group(1)) < 18:
            pytest.fail(
                f"examples/hello.mjs needs Node 18 or later (fetch); found {found.stdout!r}"
            )


def run_example(
    env: dict[str, str], state: Path, command: tuple[str, ...]
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    finished = subprocess.run(
        cli_command("run", "--json", "--input", INPUT, "--state", str(state), "--", *command),
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    described = (
        f"status {finished.returncode}\nstdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"
    )
    assert finished.returncode == 0, described
    lines = finished.stdout.splitlines()
    assert len(lines) == 1, described
    summary = json.loads(lines[0])
    assert isinstance(summary, dict), described
    assert set(summary) == SUMMARY_KEYS, described
    return summary, finished


def check_run(
    summary: dict[str, Any], finished: subprocess.CompletedProcess[str], runs: int
) -> None:
    text = f"hello, Ada (run {runs})"
    assert summary["exitCode"] == 0
    assert isinstance(summary["executionId"], str)
    assert summary["executionId"]
    assert isinstance(summary["durationMs"], int)
    assert summary["durationMs"] >= 0
    assert summary["output"] == {"greeting": "hello, Ada", "runs": runs}
    assert summary["condition"] is True
    assert summary["variables"] == {
        "read": ["runs"],
        "written": {"runs": {"before": None if runs == 1 else runs - 1, "after": runs}},
    }
    assert len(summary["toolActions"]) == 1, summary["toolActions"]
    (action,) = summary["toolActions"]
    assert (action["tool"], action["action"]) == ("slack", "send_message")
    # The example sends `config`, as the Python and Bash helpers do: it is the params.
    assert action["params"] == {"text": text}
    assert action["dryRun"] is True
    assert action["result"]["success"] is True
    assert summary["auditEvents"] == CALLS_PER_RUN
    # With --json the script's own output goes to the runner's stderr.
    assert text in finished.stderr
    assert "slack send_message: dry run, not sent" in finished.stderr


@pytest.mark.parametrize(("command", "programs"), EXAMPLES)
def test_an_example_run_twice_reports_its_calls_and_counts_its_runs(
    command: tuple[str, ...],
    programs: tuple[str, ...],
    environment: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {name: value for name, value in environment.items() if name not in {"HOST", "PORT"}}
    require_programs(programs, env["PATH"])
    state = tmp_path / "state"

    first, first_run = run_example(env, state, command)
    check_run(first, first_run, runs=1)

    second, second_run = run_example(env, state, command)
    check_run(second, second_run, runs=2)
    assert second["executionId"] != first["executionId"]


@pytest.mark.parametrize(("command", "programs"), EXAMPLES)
def test_the_readme_runs_each_example_with_one_line(
    command: tuple[str, ...], programs: tuple[str, ...]
) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    _, found, rest = readme.partition("\n## Run a script locally\n")
    assert found, "README.md has no '## Run a script locally' section"
    section = rest.split("\n## ", 1)[0]
    line = f"./dev cli run --input '{INPUT}' -- {' '.join(command)}"
    assert line in section.splitlines(), f"the section lacks the line {line!r}"
