import hashlib
import hmac
from pathlib import Path

from adapters.auth.cache import CachedTokenVerifier
from adapters.backend_http.repositories import (
    BackendExecutionRepository,
    BackendToolGateway,
    BackendVariableRepository,
)
from adapters.memory.execution_cache import InProcessExecutionCache
from adapters.memory.revocations import CachedRevocationList
from adapters.sqlite.executions import SqliteExecutionRepository
from adapters.sqlite.revocations import SqliteRevocationList
from adapters.sqlite.variables import SqliteVariableRepository
from adapters.tools.logged import LoggedToolGateway
from adapters.valkey.executions import ValkeyExecutionCache
from adapters.valkey.rate_limiter import ValkeyRateLimiter
from adapters.valkey.revocations import ValkeyRevocationFeed
from adapters.valkey.variables import ValkeyVariableCache
from domain.model import Principal
from entrypoints.container import Container, audit_key
from entrypoints.http.app import create_app
from entrypoints.settings import load_settings

SECRET = "s" * 40


def settings_for(tmp_path: Path, **environ: str):
    return load_settings({"HOME": str(tmp_path), "JWT_SECRET": SECRET, **environ}, cwd=tmp_path)


def test_the_embedded_defaults_keep_everything_in_the_local_store(tmp_path):
    container = Container(settings=settings_for(tmp_path))

    assert isinstance(container.execution_repository(), InProcessExecutionCache)
    assert isinstance(container.shared_executions(), SqliteExecutionRepository)
    assert container.execution_catalog() is container.shared_executions()
    assert isinstance(container.variable_repository(), SqliteVariableRepository)
    assert container.store().path == tmp_path / ".local/share/cronium-runtime/runtime.db"


def test_a_configured_backend_is_the_system_of_record_and_runs_the_tools(tmp_path):
    settings = settings_for(tmp_path, BACKEND_URL="http://127.0.0.1:5001", BACKEND_TOKEN="t")
    container = Container(settings=settings)

    assert isinstance(container.execution_repository(), InProcessExecutionCache)
    assert isinstance(container.shared_executions(), BackendExecutionRepository)
    assert isinstance(container.variable_repository(), BackendVariableRepository)
    assert isinstance(container.tool_gateway(), BackendToolGateway)
    assert container.execution_catalog() is None
    assert "backend" in [probe.name for probe in container.health_probes()]


def test_without_a_backend_the_builtin_tools_run_and_every_call_is_kept(tmp_path):
    gateway = Container(settings=settings_for(tmp_path)).tool_gateway()

    assert isinstance(gateway, LoggedToolGateway)


def test_a_configured_valkey_puts_its_cache_and_limiter_in_front_of_the_store(tmp_path):
    container = Container(settings=settings_for(tmp_path, VALKEY_URL="valkey://127.0.0.1:6379"))

    assert isinstance(container.variable_repository(), ValkeyVariableCache)
    assert isinstance(container.execution_repository(), InProcessExecutionCache)
    assert isinstance(container.shared_executions(), ValkeyExecutionCache)
    assert isinstance(container.rate_limiter(), ValkeyRateLimiter)
    assert isinstance(container.execution_catalog(), SqliteExecutionRepository)


def test_revocations_are_shared_through_the_store_alone_without_valkey(tmp_path):
    container = Container(settings=settings_for(tmp_path))

    assert isinstance(container.revocations(), CachedRevocationList)
    assert isinstance(container.revocation_feed(), SqliteRevocationList)


def test_revocations_are_shared_through_valkey_when_configured(tmp_path):
    container = Container(settings=settings_for(tmp_path, VALKEY_URL="valkey://127.0.0.1:6379"))

    assert isinstance(container.revocation_feed(), ValkeyRevocationFeed)


def test_the_edge_verifies_tokens_through_the_cache_in_front_of_the_codec(tmp_path):
    assert isinstance(
        Container(settings=settings_for(tmp_path)).token_verifier(), CachedTokenVerifier
    )


def test_the_audit_key_is_derived_from_the_first_jwt_secret(tmp_path):
    expected = hmac.new(SECRET.encode(), b"cronium-runtime audit key", hashlib.sha256).digest()

    assert audit_key(settings_for(tmp_path)) == expected


def test_a_configured_audit_key_is_used_as_it_is(tmp_path):
    assert audit_key(settings_for(tmp_path, AUDIT_HMAC_KEY="k" * 32)) == b"k" * 32


async def test_tokens_minted_by_the_container_open_their_execution(tmp_path):
    codec = Container(settings=settings_for(tmp_path)).token_codec()

    principal = await codec.verify(codec.issue(Principal(execution_id="e1", user_id="u1"), 60))

    assert (principal.execution_id, principal.user_id) == ("e1", "u1")


def test_create_app_without_arguments_reads_the_environment_and_makes_a_secret(
    tmp_path, monkeypatch
):
    for name in ("JWT_SECRET", "RUNTIME_JWT_SECRET", "RUNTIME_AUTH_JWT_SECRET", "JWT_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)

    create_app()

    assert (tmp_path / "cronium-runtime" / "dev-jwt-secret").stat().st_mode & 0o777 == 0o600
