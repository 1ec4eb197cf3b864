"""`executions create` and `vars`, driven in-process through `main(argv)`, on the SQLite store
in the test's own data folder."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from test_cli_main import (
    STRONG_SECRET,
    claims_of,
    dev_secret_file,
    one_line_on_stderr,
    verify,
)

from adapters.audit.sinks.store import SqliteAuditSink
from adapters.sqlite.executions import SqliteExecutionRepository
from adapters.sqlite.store import DATABASE_FILE, SqliteStore
from adapters.sqlite.variables import SqliteVariableRepository
from application.get_variable import GetVariableCommand
from domain.errors import InvalidKeyError
from domain.model import (
    ExecutionContext,
    Principal,
    RequestContext,
    Variable,
    validate_variable_key,
)
from entrypoints.cli.main import main
from entrypoints.container import Container
from entrypoints.dev_secret import with_development_secret
from entrypoints.settings import load_settings

EXPORTED = ("CRONIUM_RUNTIME_API", "CRONIUM_EXECUTION_ID", "CRONIUM_EXECUTION_TOKEN")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LONG_KEY = "k" * 256


def store_folder(tmp_path: Path) -> Path:
    return tmp_path / "data" / "cronium-runtime"


def succeed(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Runs the command, which must succeed silently on stderr; its stdout."""
    status = main(list(argv))
    captured = capsys.readouterr()
    assert (status, captured.err) == (0, ""), captured.err
    return captured.out


def fail(capsys: pytest.CaptureFixture[str], status: int, *argv: str) -> str:
    """Runs the command, which must end with `status` and one line on stderr; that line."""
    assert main(list(argv)) == status
    return one_line_on_stderr(capsys)


def exports(text: str) -> dict[str, str]:
    """The `export NAME=value` lines as a shell would read them."""
    lines = text.splitlines()
    assert len(lines) == 3, text
    assert text == "\n".join(lines) + "\n"
    values = {}
    for line in lines:
        words = shlex.split(line)
        assert len(words) == 2, line
        assert words[0] == "export"
        name, equals, value = words[1].partition("=")
        assert equals == "=", line
        values[name] = value
    assert tuple(values) == EXPORTED
    return values


def create_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    out = succeed(capsys, "executions", "create", "--json", *argv)
    assert len(out.splitlines()) == 1, out
    document = json.loads(out)
    assert isinstance(document, dict)
    return document


def on_store(tmp_path: Path, work: Any) -> Any:
    """`await work(store)` on the SQLite store the CLI wrote, opened and closed around it."""

    async def run() -> Any:
        store = SqliteStore(store_folder(tmp_path))
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def stored_context(tmp_path: Path, execution_id: str) -> ExecutionContext:
    async def read(store: SqliteStore) -> ExecutionContext:
        return await SqliteExecutionRepository(store).get_context(execution_id)

    return on_store(tmp_path, read)


def stored_variable(tmp_path: Path, user_id: str, key: str) -> Variable | None:
    async def read(store: SqliteStore) -> Variable | None:
        return await SqliteVariableRepository(store).get(user_id, key)

    return on_store(tmp_path, read)


def dev_secret(tmp_path: Path) -> str:
    return dev_secret_file(tmp_path).read_text().strip()


# --- executions create: the export lines ------------------------------------------------------


def test_create_prints_three_export_lines_a_shell_can_evaluate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = exports(succeed(capsys, "executions", "create"))

    assert values["CRONIUM_RUNTIME_API"] == "http://127.0.0.1:8081"
    assert values["CRONIUM_EXECUTION_ID"].startswith("exec-")
    principal = asyncio.run(verify(values["CRONIUM_EXECUTION_TOKEN"], dev_secret(tmp_path)))
    assert principal.execution_id == values["CRONIUM_EXECUTION_ID"]
    assert principal.user_id == "local"


def test_the_export_lines_survive_a_real_shells_eval(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    awkward_url = "http://127.0.0.1:9/it's a $path with `ticks`"
    out = succeed(capsys, "executions", "create", "--api-url", awkward_url)

    shown = subprocess.run(
        [
            "bash",
            "-c",
            'eval "$1"; printf "%s\\n" "$CRONIUM_RUNTIME_API" "$CRONIUM_EXECUTION_ID"'
            ' "$CRONIUM_EXECUTION_TOKEN"',
            "bash",
            out,
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )

    assert shown.stdout.splitlines() == list(exports(out).values())
    assert shown.stdout.splitlines()[0] == awkward_url


def test_the_token_carries_the_stored_executions_event_and_job(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = exports(succeed(capsys, "executions", "create"))

    principal = asyncio.run(verify(values["CRONIUM_EXECUTION_TOKEN"], dev_secret(tmp_path)))
    context = stored_context(tmp_path, values["CRONIUM_EXECUTION_ID"])
    assert (principal.event_id, principal.job_id) == (context.event_id, context.job_id)
    assert context.user_id == "local"


def test_with_jwt_secret_the_token_is_signed_with_it_and_no_secret_is_made(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)

    values = exports(succeed(capsys, "executions", "create"))

    principal = asyncio.run(verify(values["CRONIUM_EXECUTION_TOKEN"], STRONG_SECRET))
    assert principal.execution_id == values["CRONIUM_EXECUTION_ID"]
    assert principal.user_id == "local"
    assert not dev_secret_file(tmp_path).exists()


def test_the_execution_belongs_to_the_configured_embedded_user(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMBEDDED_USER_ID", "alice")

    created = create_json(capsys)

    assert claims_of(created["token"], dev_secret(tmp_path))["userId"] == "alice"
    assert stored_context(tmp_path, created["executionId"]).user_id == "alice"


def test_the_token_lives_the_configured_token_expiration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOKEN_EXPIRATION", "5m")
    before = time.time()

    created = create_json(capsys)

    after = time.time()
    expires = claims_of(created["token"], dev_secret(tmp_path))["exp"]
    assert before + 300 - 1 <= expires <= after + 300  # type: ignore[operator]


def test_each_create_makes_a_new_execution(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = create_json(capsys)
    second = create_json(capsys)

    assert first["executionId"] != second["executionId"]
    for created in (first, second):
        assert (
            stored_context(tmp_path, created["executionId"]).execution_id
            == (created["executionId"])
        )


# --- executions create --json -----------------------------------------------------------------


def test_json_prints_one_object_with_exactly_the_url_the_id_and_the_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    created = create_json(capsys)

    assert set(created) == {"apiUrl", "executionId", "token"}
    assert created["apiUrl"] == "http://127.0.0.1:8081"
    principal = asyncio.run(verify(created["token"], dev_secret(tmp_path)))
    assert principal.execution_id == created["executionId"]
    assert principal.user_id == "local"


# --- the API URL ------------------------------------------------------------------------------


def test_api_url_option_wins_over_the_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("ENABLE_TLS", "true")
    monkeypatch.setenv("TLS_CERT", "/nonexistent/cert.pem")
    monkeypatch.setenv("TLS_KEY", "/nonexistent/key.pem")

    values = exports(
        succeed(capsys, "executions", "create", "--api-url", "http://runtime.test:1234")
    )

    assert values["CRONIUM_RUNTIME_API"] == "http://runtime.test:1234"
    assert create_json(capsys, "--api-url", "http://runtime.test:1234")["apiUrl"] == (
        "http://runtime.test:1234"
    )


@pytest.mark.parametrize(
    ("environment", "url"),
    [
        pytest.param({}, "http://127.0.0.1:8081", id="defaults"),
        pytest.param({"PORT": "9123"}, "http://127.0.0.1:9123", id="port"),
        pytest.param({"RUNTIME_PORT": "9124"}, "http://127.0.0.1:9124", id="runtime-port"),
        pytest.param({"HOST": "0.0.0.0", "PORT": "9125"}, "http://127.0.0.1:9125", id="any-v4"),
        pytest.param({"HOST": "::"}, "http://127.0.0.1:8081", id="any-v6"),
        pytest.param({"HOST": "127.0.0.5", "PORT": "9126"}, "http://127.0.0.5:9126", id="host"),
        pytest.param({"HOST": "::1"}, "http://[::1]:8081", id="v6-host"),
        pytest.param(
            {"ENABLE_TLS": "true", "TLS_CERT": "/nonexistent/c.pem", "TLS_KEY": "/nonexistent/k"},
            "https://127.0.0.1:8081",
            id="tls",
        ),
    ],
)
def test_the_default_api_url_follows_the_server_settings(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    url: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert exports(succeed(capsys, "executions", "create"))["CRONIUM_RUNTIME_API"] == url
    assert create_json(capsys)["apiUrl"] == url


# --- executions create: the input -------------------------------------------------------------


def test_without_an_input_the_execution_has_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    created = create_json(capsys)

    context = stored_context(tmp_path, created["executionId"])
    assert context.input is None
    assert "input" not in context.metadata


def test_the_input_option_lands_in_the_executions_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    created = create_json(capsys, "--input", '{"a": 1, "name": "wörld", "list": [true, null]}')

    context = stored_context(tmp_path, created["executionId"])
    assert context.input == {"a": 1, "name": "wörld", "list": [True, None]}
    assert context.metadata == {"input": {"a": 1, "name": "wörld", "list": [True, None]}}


@pytest.mark.parametrize("text", ["0", "false", '""', "[]", '"plain"'])
def test_any_json_value_but_null_is_an_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    created = create_json(capsys, "--input", text)

    assert stored_context(tmp_path, created["executionId"]).metadata == {"input": json.loads(text)}


def test_the_input_file_lands_in_the_executions_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "input.json").write_text('{"from": "a file", "n": 2.5}\n', encoding="utf-8")

    absolute = create_json(capsys, "--input-file", str(tmp_path / "input.json"))
    relative = create_json(capsys, "--input-file", "input.json")  # the working directory's

    for created in (absolute, relative):
        context = stored_context(tmp_path, created["executionId"])
        assert context.input == {"from": "a file", "n": 2.5}


def test_an_input_file_of_dash_is_read_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"from": "stdin", "ü": [1]}'))

    created = create_json(capsys, "--input-file", "-")

    assert stored_context(tmp_path, created["executionId"]).input == {"from": "stdin", "ü": [1]}


def test_the_event_name_and_type_options_name_the_stored_event(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    named = create_json(capsys, "--event-name", "hello", "--event-type", "HTTP_REQUEST")
    default = create_json(capsys)

    named_event = stored_context(tmp_path, named["executionId"]).event
    default_event = stored_context(tmp_path, default["executionId"]).event
    assert named_event is not None
    assert default_event is not None
    assert (named_event["name"], named_event["type"]) == ("hello", "HTTP_REQUEST")
    assert (default_event["name"], default_event["type"]) == ("local", "SCRIPT")


def test_input_and_input_file_together_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "input.json").write_text("{}")

    line = fail(capsys, 2, "executions", "create", "--input", "{}", "--input-file", "input.json")

    assert "--input" in line
    assert not (store_folder(tmp_path) / DATABASE_FILE).exists()


@pytest.mark.parametrize("text", ["{not json", "", "'single'", '{"a": 1} trailing'])
def test_an_input_that_is_not_json_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    line = fail(capsys, 2, "executions", "create", "--input", text)

    assert "--input" in line
    assert "JSON" in line
    assert not (store_folder(tmp_path) / DATABASE_FILE).exists()


def test_a_missing_input_file_is_an_error_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = fail(capsys, 1, "executions", "create", "--input-file", "nowhere.json")

    assert "nowhere.json" in line
    assert not (store_folder(tmp_path) / DATABASE_FILE).exists()


def test_a_missing_input_file_with_a_newline_in_its_name_is_still_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = fail(capsys, 1, "executions", "create", "--input-file", "no\nsuch.json")

    assert "such.json" in line


# --- a backend configured ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["executions", "create"], id="create"),
        pytest.param(["executions", "create", "--json"], id="create-json"),
        pytest.param(["vars", "list"], id="list"),
        pytest.param(["vars", "get", "k"], id="get"),
        pytest.param(["vars", "set", "k", "1"], id="set"),
        pytest.param(["vars", "delete", "k"], id="delete"),
    ],
)
def test_with_a_backend_the_embedded_commands_stop_with_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
) -> None:
    monkeypatch.setenv("BACKEND_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BACKEND_TOKEN", "a-backend-token")
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)

    line = fail(capsys, 1, *argv)

    assert "backend" in line.lower()
    assert not (store_folder(tmp_path) / DATABASE_FILE).exists()


# --- vars: set and get ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "printed"),
    [
        pytest.param('"hello"', '"hello"', id="string-quoted"),
        pytest.param('"héllo, wörld ✓"', '"héllo, wörld ✓"', id="unicode-kept"),
        pytest.param("42", "42", id="integer"),
        pytest.param("2.5", "2.5", id="float"),
        pytest.param("true", "true", id="boolean"),
        pytest.param("null", "null", id="null"),
        pytest.param('[1, "two", null]', '[1, "two", null]', id="array"),
    ],
)
def test_a_value_set_is_printed_back_as_json(
    capsys: pytest.CaptureFixture[str], given: str, printed: str
) -> None:
    assert succeed(capsys, "vars", "set", "greeting", given) == ""

    assert succeed(capsys, "vars", "get", "greeting") == printed + "\n"


def test_an_object_is_printed_back_as_the_same_json(capsys: pytest.CaptureFixture[str]) -> None:
    value = {"count": 1, "nested": {"ä": [1.5, None, False]}, "text": 'say "hi"'}
    succeed(capsys, "vars", "set", "state", json.dumps(value))

    out = succeed(capsys, "vars", "get", "state")

    assert len(out.splitlines()) == 1
    assert json.loads(out) == value
    assert "ä" in out


def test_a_second_set_replaces_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    succeed(capsys, "vars", "set", "counter", "1")
    succeed(capsys, "vars", "set", "counter", '{"count": 2}')

    assert json.loads(succeed(capsys, "vars", "get", "counter")) == {"count": 2}


@pytest.mark.parametrize("text", ["not json", "'single'", "{", ""])
def test_setting_a_value_that_is_not_json_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    line = fail(capsys, 2, "vars", "set", "k", text)

    assert "JSON" in line
    assert not (store_folder(tmp_path) / DATABASE_FILE).exists()


def test_values_persist_in_the_sqlite_file_across_separate_commands(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    succeed(capsys, "vars", "set", "kept", '{"across": "calls"}')

    assert (store_folder(tmp_path) / DATABASE_FILE).is_file()
    variable = stored_variable(tmp_path, "local", "kept")
    assert variable is not None
    assert variable.value == {"across": "calls"}
    assert json.loads(succeed(capsys, "vars", "get", "kept")) == {"across": "calls"}


def test_the_variables_belong_to_the_configured_embedded_user(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMBEDDED_USER_ID", "alice")

    succeed(capsys, "vars", "set", "owner", '"alice"')

    assert stored_variable(tmp_path, "alice", "owner") is not None
    assert stored_variable(tmp_path, "local", "owner") is None


# --- vars: list -------------------------------------------------------------------------------


def test_list_prints_one_key_per_line_sorted(capsys: pytest.CaptureFixture[str]) -> None:
    for key in ["zeta", "alpha", "Mid", "émoji", "a/b"]:
        succeed(capsys, "vars", "set", key, "1")

    out = succeed(capsys, "vars", "list")

    assert out == "".join(f"{key}\n" for key in sorted(["zeta", "alpha", "Mid", "émoji", "a/b"]))


def test_list_of_no_variables_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert succeed(capsys, "vars", "list") == ""
    assert json.loads(succeed(capsys, "vars", "list", "--json")) == []


def test_list_json_is_an_array_of_keys_and_write_times(capsys: pytest.CaptureFixture[str]) -> None:
    succeed(capsys, "vars", "set", "b", "2")
    succeed(capsys, "vars", "set", "a", '"x"')

    out = succeed(capsys, "vars", "list", "--json")

    assert len(out.splitlines()) == 1
    rows = json.loads(out)
    assert [row["key"] for row in rows] == ["a", "b"]
    for row in rows:
        assert set(row) == {"key", "updatedAt"}
        assert TIMESTAMP.match(row["updatedAt"]), row["updatedAt"]


def test_list_does_not_show_values(capsys: pytest.CaptureFixture[str]) -> None:
    succeed(capsys, "vars", "set", "secret", '"do-not-print-me"')

    assert "do-not-print-me" not in succeed(capsys, "vars", "list")
    assert "do-not-print-me" not in succeed(capsys, "vars", "list", "--json")


# --- vars: delete and missing keys ------------------------------------------------------------


def test_a_deleted_variable_is_no_longer_set(capsys: pytest.CaptureFixture[str]) -> None:
    succeed(capsys, "vars", "set", "gone", "1")

    assert succeed(capsys, "vars", "delete", "gone") == ""

    line = fail(capsys, 1, "vars", "get", "gone")
    assert "not set" in line
    assert "gone" in line
    assert succeed(capsys, "vars", "list") == ""


def test_getting_a_key_never_set_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "not set" in fail(capsys, 1, "vars", "get", "never")


def test_deleting_a_key_never_set_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    line = fail(capsys, 1, "vars", "delete", "never")

    assert "never" in line
    assert "not set" in line


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["get", LONG_KEY], id="get"),
        pytest.param(["set", LONG_KEY, "1"], id="set"),
        pytest.param(["delete", LONG_KEY], id="delete"),
    ],
)
def test_an_invalid_key_is_an_error_with_the_invalid_key_message(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(InvalidKeyError) as invalid:
        validate_variable_key(LONG_KEY)

    line = fail(capsys, 1, "vars", *argv)

    assert line == f"cronium-runtime: {invalid.value.message}"
    assert "256" in line


def test_a_key_with_dot_segments_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "'..'" in fail(capsys, 1, "vars", "set", "a/../b", "1")


# --- the CLI and the executions share the store -----------------------------------------------


def test_the_clis_writes_are_read_by_an_execution_of_the_local_user(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    created = create_json(capsys)
    succeed(capsys, "vars", "set", "counter", '{"count": 41}')

    async def read_as_the_execution() -> Any:
        settings, _ = with_development_secret(load_settings())
        container = Container(settings=settings)
        if (opening := container.init_resources()) is not None:
            await opening
        try:
            principal = await container.token_codec().verify(created["token"])
            context = RequestContext(principal=principal, request_id="req-test")
            variable = await container.get_variable().execute(
                GetVariableCommand(
                    context=context, execution_id=created["executionId"], key="counter"
                )
            )
            return variable.value
        finally:
            if (closing := container.shutdown_resources()) is not None:
                await closing

    assert asyncio.run(read_as_the_execution()) == {"count": 41}


def test_an_executions_writes_are_read_by_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    created = create_json(capsys)

    async def write(store: SqliteStore) -> None:
        await SqliteVariableRepository(store).put(
            "local", "from-run", ["written", "by", created["executionId"]], at=datetime.now(UTC)
        )

    on_store(tmp_path, write)

    assert json.loads(succeed(capsys, "vars", "get", "from-run")) == [
        "written",
        "by",
        created["executionId"],
    ]


def test_the_clis_variable_operations_are_audited_as_the_execution_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    succeed(capsys, "vars", "set", "k", "1")
    succeed(capsys, "vars", "get", "k")
    succeed(capsys, "vars", "list")
    succeed(capsys, "vars", "delete", "k")
    fail(capsys, 1, "vars", "get", "k")

    async def events(store: SqliteStore) -> list[Any]:
        return await SqliteAuditSink(store).events_of("cli")

    recorded = on_store(tmp_path, events)
    assert [(event.action, event.details.outcome) for event in recorded] == [
        ("set_variable", "ok"),
        ("get_variable", "ok"),
        ("list_variables", "ok"),
        ("delete_variable", "ok"),
        ("get_variable", "VARIABLE_NOT_FOUND"),
    ]
    assert all(event.details.user_id == "local" for event in recorded)


def test_a_token_for_the_created_execution_is_refused_by_another_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    created = create_json(capsys)

    with pytest.raises(jwt.InvalidSignatureError):
        claims_of(created["token"], STRONG_SECRET)


def test_principal_of_the_created_execution_is_the_one_the_store_knows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    created = create_json(capsys, "--input", '{"name": "world"}')

    principal = asyncio.run(verify(created["token"], dev_secret(tmp_path)))
    context = stored_context(tmp_path, created["executionId"])
    assert principal == Principal(
        execution_id=context.execution_id,
        user_id=context.user_id,
        event_id=context.event_id,
        job_id=context.job_id,
        expires_at=principal.expires_at,
    )
    assert context.input == {"name": "world"}
