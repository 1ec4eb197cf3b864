"""`cronium-runtime run` as a person meets it: real runner processes, real scripts.

The scripts are Python (urllib) run by this interpreter, so nothing else is needed.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from processes import REPO, base_environment, cli_command

TIMEOUT = 15.0
KEYS = {
    "executionId",
    "exitCode",
    "durationMs",
    "output",
    "condition",
    "variables",
    "toolActions",
    "auditEvents",
}

CLIENT = """
import json, os, sys, urllib.error, urllib.request
API = os.environ["CRONIUM_RUNTIME_API"]
BASE = "/executions/" + os.environ["CRONIUM_EXECUTION_ID"]
TOKEN = os.environ["CRONIUM_EXECUTION_TOKEN"]

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(API + path, data=data, method=method, headers={
        "Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        return json.load(error)
"""


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(CLIENT + body)
    return [sys.executable, str(path)]


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command("run", *args),
        env=env or base_environment(tmp_path),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def summary_of(finished: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = finished.stdout.splitlines()
    assert len(lines) == 1, finished.stdout
    summary = json.loads(lines[0])
    assert set(summary) == KEYS
    return summary


def test_the_exit_status_is_the_commands(tmp_path: Path) -> None:
    finished = run(tmp_path, "--", *script(tmp_path, "three", "sys.exit(3)"))
    assert finished.returncode == 3, finished.stderr
    assert "exit code   3" in finished.stderr


def test_a_script_that_never_calls_the_api(tmp_path: Path) -> None:
    finished = run(tmp_path, "--json", "--", *script(tmp_path, "quiet", "print('hi')"))
    assert finished.returncode == 0, finished.stderr
    summary = summary_of(finished)
    assert summary["output"] is None
    assert summary["condition"] is None
    assert summary["variables"] == {"read": [], "written": {}}
    assert summary["toolActions"] == []
    assert summary["auditEvents"] == 0
    assert summary["exitCode"] == 0
    assert summary["executionId"].startswith("exec-")
    assert "hi" in finished.stderr  # the child's stdout goes to stderr with --json


def test_a_crashing_script_still_gets_its_summary(tmp_path: Path) -> None:
    command = script(
        tmp_path, "crash", "call('POST', BASE + '/condition', {'condition': False})\n1/0"
    )
    finished = run(tmp_path, "--", *command)
    assert finished.returncode == 1
    assert "Traceback" in finished.stderr
    assert "ZeroDivisionError" in finished.stderr
    assert "condition   false" in finished.stderr
    assert finished.stdout == ""


def test_a_command_that_is_not_found_exits_127(tmp_path: Path) -> None:
    finished = run(tmp_path, "--", str(tmp_path / "no-such-command"))
    assert finished.returncode == 127
    assert finished.stderr.strip().splitlines() == [
        f"cronium-runtime: command not found: {tmp_path / 'no-such-command'}"
    ]


EVERYTHING = """
print("to stdout")
print("to stderr", file=sys.stderr)
call("POST", BASE + "/output", {"data": {"ok": True}})
call("POST", BASE + "/condition", {"condition": True})
assert call("GET", BASE + "/variables/missing")["success"] is False
call("PUT", BASE + "/variables/greeting", {"value": "hello"})
call("POST", "/tool-actions/execute", {"tool": "log", "action": "info", "params": {"m": 1}})
call("POST", "/tool-actions/execute",
     {"tool": "slack", "action": "send_message", "params": {"text": "hi"}})
"""


def test_json_reports_everything_the_script_did(tmp_path: Path) -> None:
    finished = run(tmp_path, "--json", "--", *script(tmp_path, "everything", EVERYTHING))
    assert finished.returncode == 0, finished.stderr
    assert "to stdout" in finished.stderr
    assert "to stderr" in finished.stderr
    summary = summary_of(finished)
    assert summary["output"] == {"ok": True}
    assert summary["condition"] is True
    assert summary["variables"] == {
        "read": ["missing"],
        "written": {"greeting": {"before": None, "after": "hello"}},
    }
    log, slack = summary["toolActions"]
    assert log == {
        "tool": "log",
        "action": "info",
        "params": {"m": 1},
        "result": {"success": True, "data": None, "metadata": {"logged": True}},
        "dryRun": False,
    }
    assert slack == {
        "tool": "slack",
        "action": "send_message",
        "params": {"text": "hi"},
        "result": {"success": True, "data": None, "metadata": {"dryRun": True}},
        "dryRun": True,
    }
    assert summary["auditEvents"] == 6
    assert isinstance(summary["durationMs"], int)


def test_the_text_summary_says_the_same(tmp_path: Path) -> None:
    finished = run(tmp_path, "--", *script(tmp_path, "everything", EVERYTHING))
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "to stdout\n"
    text = finished.stderr
    assert 'output      {"ok": true}' in text
    assert "condition   true" in text
    assert "read        missing" in text
    assert 'greeting: (unset) → "hello"' in text
    assert 'slack.send_message {"text": "hi"} → ok, dry run (nothing sent)' in text
    assert "audit       6 events" in text


COUNTER = """
found = call("GET", BASE + "/variables/runs")
count = (found["data"]["value"] if found["success"] else 0) + 1
call("PUT", BASE + "/variables/runs", {"value": count})
call("POST", BASE + "/output", {"data": count})
"""


def test_variables_persist_across_runs_and_state_isolates_them(tmp_path: Path) -> None:
    counter = script(tmp_path, "counter", COUNTER)
    first = summary_of(run(tmp_path, "--json", "--", *counter))
    second = summary_of(run(tmp_path, "--json", "--", *counter))
    assert (first["output"], second["output"]) == (1, 2)
    assert second["variables"]["written"] == {"runs": {"before": 1, "after": 2}}
    elsewhere = summary_of(
        run(tmp_path, "--state", str(tmp_path / "other"), "--json", "--", *counter)
    )
    assert elsewhere["output"] == 1
    assert (tmp_path / "other").is_dir()


def test_var_seeds_a_value_the_script_reads(tmp_path: Path) -> None:
    counter = script(tmp_path, "counter", COUNTER)
    finished = run(tmp_path, "--var", "runs=41", "--var", 'note="x"', "--json", "--", *counter)
    summary = summary_of(finished)
    assert summary["output"] == 42
    assert summary["variables"]["written"] == {"runs": {"before": 41, "after": 42}}


def test_input_and_event_reach_the_script(tmp_path: Path) -> None:
    body = "call('POST', BASE + '/output', {'data': call('GET', BASE + '/input')['data']})"
    finished = run(tmp_path, "--input", '{"n": 7}', "--json", "--", *script(tmp_path, "i", body))
    assert summary_of(finished)["output"] == {"n": 7}


TRAPS_SIGINT = """
import signal, time
marker = sys.argv[1]
def stop(signum, frame):
    open(marker, "w").write("interrupted")
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
open(marker + ".ready", "w").close()
time.sleep(10)
sys.exit(5)
"""


def test_sigint_is_forwarded_and_the_runner_exits_after_the_child(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    command = script(tmp_path, "trap", TRAPS_SIGINT)
    runner = subprocess.Popen(
        cli_command("run", "--", *command, str(marker)),
        env=base_environment(tmp_path),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not Path(f"{marker}.ready").exists():
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        runner.send_signal(signal.SIGINT)
        _, stderr = runner.communicate(timeout=TIMEOUT)
        assert runner.returncode == 0, stderr
        assert marker.read_text() == "interrupted"
        assert "exit code   0" in stderr
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


SLEEPS = "import time\ntime.sleep(2.6)\n"


def test_a_progress_line_under_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        runner = subprocess.Popen(
            cli_command("run", "--", *script(tmp_path, "sleeps", SLEEPS)),
            env=base_environment(tmp_path),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        follower = -1
        seen = b""
        deadline = time.monotonic() + TIMEOUT
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(leader, 4096)
                    except OSError:  # the terminal closed: the runner has ended
                        break
                    if not chunk:
                        break
                    seen += chunk
                elif runner.poll() is not None:
                    break
            assert runner.wait(timeout=TIMEOUT) == 0
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    text = seen.decode(errors="replace")
    assert "\r" in text
    assert "running" in text
    assert "requests served" in text
    assert "exit code   0" in text


def test_no_progress_line_when_stderr_is_a_pipe(tmp_path: Path) -> None:
    finished = run(tmp_path, "--", *script(tmp_path, "sleeps", SLEEPS))
    assert finished.returncode == 0
    assert "\r" not in finished.stderr
    assert "running" not in finished.stderr
