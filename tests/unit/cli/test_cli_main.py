"""`cronium-runtime` driven in-process through `main(argv)`: what it prints and what it returns."""

from __future__ import annotations

import stat
import time
from importlib.metadata import version
from pathlib import Path

import jwt
import pytest

from adapters.auth.jwt import JwtTokenCodec, SigningKey
from domain.model import Principal
from entrypoints.cli.main import main

STRONG_SECRET = "an-operator-chosen-secret-of-40-bytes-xx"
WRONG_SECRET = "another-secret-that-is-long-enough-too-xx"


def dev_secret_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "cronium-runtime" / "dev-jwt-secret"


def issue_token(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["token", *argv]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert len(lines) == 1, captured.out
    assert captured.out == lines[0] + "\n"
    return lines[0]


async def verify(token: str, secret: str) -> Principal:
    return await JwtTokenCodec(keys=[SigningKey(kid=None, secret=secret)]).verify(token)


def claims_of(token: str, secret: str) -> dict[str, object]:
    return jwt.decode(token, secret, algorithms=["HS256"])


def one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cronium-runtime: ")
    return lines[0]


# --- --version --------------------------------------------------------------------------------


def test_version_prints_the_package_version_and_exits_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # argparse's version action exits by SystemExit(0); `main` lets it through, so the console
    # script exits 0 with the version on stdout.
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    captured = capsys.readouterr()
    assert captured.out == f"cronium-runtime {version('cronium-runtime')}\n"
    assert captured.err == ""


# --- token ------------------------------------------------------------------------------------


async def test_a_token_opens_its_execution_for_the_embedded_user(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    token = issue_token(capsys, "--execution", "e1")

    principal = await verify(token, dev_secret_file(tmp_path).read_text().strip())
    assert principal.execution_id == "e1"
    assert principal.user_id == "local"
    assert principal.event_id is None


async def test_the_default_user_is_the_configured_embedded_user(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMBEDDED_USER_ID", "alice")

    token = issue_token(capsys, "--execution", "e1")

    principal = await verify(token, dev_secret_file(tmp_path).read_text().strip())
    assert principal.user_id == "alice"


async def test_user_and_event_options_become_claims(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    token = issue_token(capsys, "--execution", "e1", "--user", "u7", "--event", "ev9")

    principal = await verify(token, dev_secret_file(tmp_path).read_text().strip())
    assert (principal.execution_id, principal.user_id, principal.event_id) == ("e1", "u7", "ev9")


def test_ttl_sets_the_expiry(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    before = time.time()
    token = issue_token(capsys, "--execution", "e1", "--ttl", "30m")
    after = time.time()

    claims = claims_of(token, dev_secret_file(tmp_path).read_text().strip())
    assert before + 1800 - 1 <= claims["exp"] <= after + 1800  # type: ignore[operator]


def test_without_ttl_a_token_lives_the_configured_token_expiration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = dev_secret_file(tmp_path)
    before = time.time()
    default_token = issue_token(capsys, "--execution", "e1")
    monkeypatch.setenv("TOKEN_EXPIRATION", "5m")
    short_token = issue_token(capsys, "--execution", "e1")
    after = time.time()

    default_exp = claims_of(default_token, secret.read_text().strip())["exp"]
    short_exp = claims_of(short_token, secret.read_text().strip())["exp"]
    assert before + 3600 - 1 <= default_exp <= after + 3600  # type: ignore[operator]
    assert before + 300 - 1 <= short_exp <= after + 300  # type: ignore[operator]


def test_without_a_secret_a_private_development_secret_is_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret_file = dev_secret_file(tmp_path)
    assert not secret_file.exists()

    issue_token(capsys, "--execution", "e1")

    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700
    assert len(secret_file.read_text().strip()) >= 32
    # No draft file is left beside it.
    assert [path.name for path in secret_file.parent.iterdir()] == ["dev-jwt-secret"]


async def test_the_development_secret_is_reused_by_the_next_call(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = issue_token(capsys, "--execution", "e1")
    secret = dev_secret_file(tmp_path).read_text()

    second = issue_token(capsys, "--execution", "e2")

    assert dev_secret_file(tmp_path).read_text() == secret
    assert (await verify(first, secret.strip())).execution_id == "e1"
    assert (await verify(second, secret.strip())).execution_id == "e2"


async def test_with_jwt_secret_the_token_is_signed_with_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)

    token = issue_token(capsys, "--execution", "e1")

    assert (await verify(token, STRONG_SECRET)).execution_id == "e1"
    with pytest.raises(jwt.InvalidSignatureError):
        claims_of(token, WRONG_SECRET)
    assert not dev_secret_file(tmp_path).exists()


def test_with_a_key_ring_the_token_is_signed_with_the_first_key_and_names_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRETS", f"new={STRONG_SECRET},old={WRONG_SECRET}")

    token = issue_token(capsys, "--execution", "e1")

    assert jwt.get_unverified_header(token)["kid"] == "new"
    assert claims_of(token, STRONG_SECRET)["executionId"] == "e1"
    with pytest.raises(jwt.InvalidSignatureError):
        claims_of(token, WRONG_SECRET)


# --- usage errors: one line, status 2 ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["frobnicate"], id="unknown-command"),
        pytest.param(["token"], id="token-without-execution"),
        pytest.param(["token", "--execution"], id="execution-without-value"),
        pytest.param(["token", "--execution", "e1", "--ttl", "nonsense"], id="ttl-nonsense"),
        pytest.param(["token", "--execution", "e1", "--ttl", "0s"], id="ttl-zero"),
        pytest.param(["token", "--execution", "e1", "--bogus"], id="unknown-option"),
        pytest.param(["serve", "--workers", "many"], id="workers-not-a-number"),
    ],
)
def test_a_usage_error_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 2
    one_line_on_stderr(capsys)


def test_a_bad_ttl_is_named_in_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--execution", "e1", "--ttl", "nonsense"]) == 2
    assert "--ttl" in one_line_on_stderr(capsys)


def test_zero_workers_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "0"]) == 2
    one_line_on_stderr(capsys)


# --- configuration errors: one line naming the variable, status 1 -----------------------------


@pytest.mark.parametrize("command", [["token", "--execution", "e1"], ["serve"]])
def test_an_unparsable_port_is_named_and_stops_the_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("RUNTIME_PORT", "tcp://10.0.0.1:8081")

    assert main(command) == 1

    line = one_line_on_stderr(capsys)
    assert "RUNTIME_PORT" in line
    assert "tcp://10.0.0.1:8081" in line


@pytest.mark.parametrize("command", [["token", "--execution", "e1"], ["serve"]])
def test_a_missing_config_file_is_named_and_stops_the_command(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
) -> None:
    monkeypatch.setenv("CONFIG_FILE", str(tmp_path / "nowhere" / "config.yaml"))

    assert main(command) == 1

    line = one_line_on_stderr(capsys)
    assert "CONFIG_FILE" in line
    assert "does not exist" in line


def test_serving_with_several_workers_without_valkey_says_valkey_is_needed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--workers", "2"]) == 1
    assert "Valkey" in one_line_on_stderr(capsys)
