"""What the container wires for the audit trail: the sinks `audit.sinks` names (and only
those), the store sink as the trail read back, and the `rate_limited` tally."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.audit.sinks.backend import BackendAuditSink
from adapters.audit.sinks.file import FileAuditSink
from adapters.audit.sinks.stdout import StdoutAuditSink
from adapters.audit.sinks.store import SqliteAuditSink
from adapters.memory.refusal_tally import InMemoryRefusalTally
from adapters.valkey.refusal_tally import ValkeyRefusalTally
from domain.audit import AuditAction, AuditDetails, AuditEvent
from entrypoints.container import Container
from entrypoints.settings import load_settings

SECRET = "s" * 40
BACKEND = {"BACKEND_URL": "http://127.0.0.1:5001", "BACKEND_TOKEN": "t"}


def container_for(tmp_path: Path, **environ: str) -> Container:
    settings = load_settings({"HOME": str(tmp_path), "JWT_SECRET": SECRET, **environ}, cwd=tmp_path)
    return Container(settings=settings)


def kinds(container: Container) -> list[type]:
    return [type(sink) for sink in container.audit_sinks()]


def test_without_a_backend_the_store_is_the_one_sink_and_the_trail(tmp_path):
    container = container_for(tmp_path)

    [sink] = container.audit_sinks()
    assert isinstance(sink, SqliteAuditSink)
    assert container.audit_trail() is sink


def test_with_a_backend_the_backend_is_the_one_sink(tmp_path):
    container = container_for(tmp_path, **BACKEND)

    assert kinds(container) == [BackendAuditSink]


def test_the_configured_sinks_are_built_in_their_order_once(tmp_path):
    container = container_for(tmp_path, **BACKEND, AUDIT_SINKS="stdout,file,store,backend")

    assert kinds(container) == [StdoutAuditSink, FileAuditSink, SqliteAuditSink, BackendAuditSink]
    assert container.audit_sinks() is container.audit_sinks()
    assert [sink.name for sink in container.audit_sinks()] == ["stdout", "file", "store", "backend"]


async def test_the_file_sink_writes_where_and_as_the_settings_say(tmp_path):
    path = tmp_path / "trail" / "events.jsonl"
    container = container_for(
        tmp_path,
        AUDIT_SINKS="file",
        AUDIT_FILE=str(path),
        AUDIT_FILE_MAX_SIZE="1KiB",
        AUDIT_FILE_BACKUPS="1",
    )
    [sink] = container.audit_sinks()

    for n in range(40):
        await sink.deliver(
            AuditEvent(
                id=f"id-{n}",
                execution_id="e",
                action=AuditAction.GET_INPUT,
                timestamp=datetime.now(UTC),
                details=AuditDetails(outcome="ok"),
            )
        )
    await sink.close()

    assert sorted(p.name for p in path.parent.iterdir()) == [
        "events.jsonl",
        "events.jsonl.1",
        "events.jsonl.lock",
    ]
    assert all(p.stat().st_size <= 1024 for p in path.parent.iterdir())


@pytest.mark.parametrize(
    ("environ", "kind"),
    [({}, InMemoryRefusalTally), ({"VALKEY_URL": "valkey://127.0.0.1:6379"}, ValkeyRefusalTally)],
    ids=["one process", "valkey"],
)
def test_rate_limited_refusals_are_counted_where_the_rate_limit_lives(tmp_path, environ, kind):
    container = container_for(tmp_path, **environ)

    assert isinstance(container.refusal_tally(), kind)
    assert container.rate_limited_audit() is container.rate_limited_audit()
