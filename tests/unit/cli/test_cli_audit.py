"""`cronium-runtime audit [--execution ID] [--limit N] [--json]`: the trail the `store` sink
keeps in the local store, newest N oldest first, as text lines or wire-form JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_cli_local import fail, on_store, store_folder, succeed

from adapters.audit.sinks.store import SqliteAuditSink
from adapters.sqlite.store import SqliteStore
from domain.audit import AuditAction, AuditDetails, AuditEvent, event_to_wire
from entrypoints.cli.main import main

AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)


def event(n: int, execution_id: str | None = "exec-1", **details: object) -> AuditEvent:
    fields: dict[str, object] = {
        "outcome": "ok",
        "user_id": "user-1",
        "request_id": f"req-{n}",
        **details,
    }
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id=execution_id,
        action=AuditAction.GET_INPUT,
        timestamp=AT + timedelta(seconds=n),
        details=AuditDetails(**fields),  # type: ignore[arg-type]
    )


def deliver(tmp_path: Path, *events: AuditEvent) -> None:
    async def work(store: SqliteStore) -> None:
        sink = SqliteAuditSink(store)
        for item in events:
            await sink.deliver(item)

    on_store(tmp_path, work)


def test_an_empty_trail_prints_nothing_or_an_empty_array(capsys, tmp_path: Path):
    assert succeed(capsys, "audit") == ""
    assert json.loads(succeed(capsys, "audit", "--json")) == []


def test_the_json_form_is_an_array_of_wire_form_events_oldest_first(capsys, tmp_path: Path):
    events = [event(1), event(2, execution_id=None, outcome="TOKEN_INVALID"), event(3)]
    deliver(tmp_path, *events)

    assert json.loads(succeed(capsys, "audit", "--json")) == [event_to_wire(e) for e in events]


def test_each_event_is_one_text_line_with_its_time_execution_action_and_outcome(
    capsys, tmp_path: Path
):
    deliver(
        tmp_path,
        event(1, key="greeting", value_hmac="hmac-sha256:" + "0" * 64),
        AuditEvent(
            id="rl-1",
            execution_id="exec-2",
            action=AuditAction.RATE_LIMITED,
            timestamp=AT,
            details=AuditDetails(outcome="RATE_LIMITED", user_id="user-2", count=7),
        ),
        event(3, execution_id=None, outcome="TOKEN_EXPIRED", user_id=None, request_id="req-x"),
    )

    assert succeed(capsys, "audit").splitlines() == [
        '2026-11-28T19:04:06.123Z  exec-1  get_input  ok  user="user-1" key="greeting"'
        ' request="req-1"',
        '2026-11-28T19:04:05.123Z  exec-2  rate_limited  RATE_LIMITED  user="user-2" count=7',
        '2026-11-28T19:04:08.123Z  -  get_input  TOKEN_EXPIRED  request="req-x"',
    ]


def test_execution_keeps_that_executions_events_only(capsys, tmp_path: Path):
    deliver(tmp_path, event(1), event(2, execution_id="exec-2"), event(3), event(4, None))

    listed = json.loads(succeed(capsys, "audit", "--execution", "exec-1", "--json"))

    assert [item["id"] for item in listed] == [event(1).id, event(3).id]


def test_limit_keeps_the_newest_events_oldest_first(capsys, tmp_path: Path):
    deliver(tmp_path, *(event(n) for n in range(1, 8)))

    listed = json.loads(succeed(capsys, "audit", "--limit", "3", "--json"))

    assert [item["id"] for item in listed] == [event(n).id for n in (5, 6, 7)]


def test_without_a_limit_the_newest_hundred_are_shown(capsys, tmp_path: Path):
    deliver(tmp_path, *(event(n) for n in range(1, 106)))

    listed = json.loads(succeed(capsys, "audit", "--json"))

    assert [item["id"] for item in listed] == [event(n).id for n in range(6, 106)]


@pytest.mark.parametrize("limit", ["0", "-1", "ten"])
def test_a_limit_that_is_not_a_positive_number_is_a_usage_error(capsys, limit):
    line = fail(capsys, 2, "audit", "--limit", limit)

    assert "--limit" in line


def test_the_trail_of_the_clis_own_variable_commands_is_shown(capsys, tmp_path: Path):
    succeed(capsys, "vars", "set", "greeting", '"hello"')

    listed = json.loads(succeed(capsys, "audit", "--execution", "cli", "--json"))

    assert [(item["action"], item["details"]["key"]) for item in listed] == [
        ("set_variable", "greeting")
    ]
    assert "hello" not in json.dumps(listed)


def test_a_configuration_without_the_store_sink_is_noted_on_stderr(
    capsys, monkeypatch, tmp_path: Path
):
    deliver(tmp_path, event(1))
    monkeypatch.setenv("AUDIT_SINKS", "file")

    assert main_output(capsys) == (
        f"{json.dumps([event_to_wire(event(1))], separators=(',', ':'))}\n",
        "cronium-runtime: note: audit.sinks is file, without store: the local trail receives"
        " no new events\n",
    )
    assert store_folder(tmp_path).is_dir()


def main_output(capsys) -> tuple[str, str]:
    assert main(["audit", "--json"]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err
