"""`cronium-runtime run` argument handling, driven in-process through `main(argv)`."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoints.cli.main import main
from entrypoints.cli.run import render_text, run_settings


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cronium-runtime: ")
    return lines[0]


@pytest.mark.parametrize("argv", [["run"], ["run", "--"], ["run", "--json", "--"]])
def test_no_command_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "no command" in one_error_line(capsys)


@pytest.mark.parametrize("var", ["novalue", "=1", "k=not-json", "k={"])
def test_a_bad_var_is_a_usage_error(var: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--var", var, "--", "true"]) == 2
    assert "--var" in one_error_line(capsys)


def test_input_and_input_file_together_are_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "input.json"
    file.write_text("{}")
    assert main(["run", "--input", "{}", "--input-file", str(file), "--", "true"]) == 2
    assert "not allowed with" in one_error_line(capsys)


def test_bad_input_json_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--input", "{nope", "--", "true"]) == 2
    assert "--input" in one_error_line(capsys)


def test_dry_run_and_send_tools_together_are_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--dry-run-tools", "--send-tools", "--", "true"]) == 2
    one_error_line(capsys)


def test_a_configured_backend_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BACKEND_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BACKEND_TOKEN", "a-backend-token")
    monkeypatch.setenv("JWT_SECRET", "an-operator-chosen-secret-of-40-bytes-xx")
    assert main(["run", "--", "true"]) == 1
    assert "embedded" in one_error_line(capsys)


def test_the_settings_put_the_store_in_state_and_tools_in_dry_run(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "RUNTIME_TOOLS_DRY_RUN": "false"}
    settings = run_settings(environ, state=str(tmp_path / "state"), send_tools=False)
    assert Path(settings.store.path) == tmp_path / "state"
    assert (settings.tools.mode, settings.tools.dry_run) == ("builtin", True)
    sending = run_settings(environ, state=None, send_tools=True)
    assert sending.tools.dry_run is False


@pytest.mark.parametrize(
    ("configured", "kept"),
    [
        ("store", ("store",)),
        ("stdout", ("store",)),
        ("file,stdout", ("file", "store")),
        ("store,file", ("store", "file")),
    ],
)
def test_the_trail_is_kept_in_the_store_and_never_on_stdout(
    tmp_path: Path, configured: str, kept: tuple[str, ...]
) -> None:
    # The report counts the store's trail; stdout carries the script's output or the report.
    environ = {"HOME": str(tmp_path), "AUDIT_SINKS": configured}
    assert run_settings(environ, state=None, send_tools=False).audit.sinks == kept


def test_the_text_summary_names_a_deleted_variable_and_a_dry_run() -> None:
    summary = {
        "executionId": "exec-1",
        "exitCode": 0,
        "durationMs": 1500,
        "output": None,
        "condition": False,
        "variables": {
            "read": ["a"],
            "written": {"gone": {"before": 1, "after": None}, "new": {"before": None, "after": 2}},
        },
        "toolActions": [
            {
                "tool": "slack",
                "action": "send_message",
                "params": {"text": "hi"},
                "result": {"success": True, "data": None, "metadata": {"dryRun": True}},
                "dryRun": True,
            }
        ],
        "auditEvents": 1,
    }
    text = render_text(summary)
    assert "gone: 1 → deleted" in text
    assert "new: (unset) → 2" in text
    assert "dry run (nothing sent)" in text
    assert "output      (none)" in text
    assert "condition   false" in text
    assert "1 event\n" in text
