"""The `file` sink (JSON lines, rotated at `audit.fileMaxSize` keeping `audit.fileBackups` old
files, shared by the processes of one machine) and the `stdout` sink (one line per event)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.audit.sinks.file import FileAuditSink
from adapters.audit.sinks.stdout import StdoutAuditSink
from application.ports import AuditSinkUnavailableError
from domain.audit import AuditAction, AuditDetails, AuditEvent, decode_event, encode_event

AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)


def event(n: int, *, key: str = "counter") -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id="exec-1",
        action=AuditAction.SET_VARIABLE,
        timestamp=AT,
        details=AuditDetails(outcome="ok", user_id="user-1", request_id=f"req-{n:06d}", key=key),
    )


LINE = len(encode_event(event(0))) + 1  # every `event(n)` line has this length


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def ids_in(*paths: Path) -> list[str]:
    return [json.loads(line)["id"] for path in paths for line in lines_of(path)]


def backup(path: Path, number: int) -> Path:
    return path.with_name(f"{path.name}.{number}")


@pytest.fixture
async def sinks():
    """Makes file sinks, each closed at teardown."""
    made: list[FileAuditSink] = []

    def make(path: Path, *, max_size: int, backups: int) -> FileAuditSink:
        sink = FileAuditSink(path, max_size=max_size, backups=backups)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.close()


# The file sink


async def test_each_event_is_one_line_of_its_wire_form_in_a_private_file(tmp_path, sinks):
    path = tmp_path / "audit" / "audit.jsonl"
    sink = sinks(path, max_size=1 << 20, backups=2)

    await sink.deliver(event(1))
    await sink.deliver(event(2, key="ünïcødé ✓"))

    assert (
        path.read_bytes()
        == encode_event(event(1)) + b"\n" + encode_event(event(2, key="ünïcødé ✓")) + b"\n"
    )
    assert [decode_event(line) for line in lines_of(path)] == [event(1), event(2, key="ünïcødé ✓")]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sink.name == "file"


async def test_a_line_that_would_pass_the_size_rotates_the_file_first(tmp_path, sinks):
    path = tmp_path / "audit.jsonl"
    sink = sinks(path, max_size=3 * LINE, backups=5)

    for n in range(4):
        await sink.deliver(event(n))

    assert [len(lines_of(p)) for p in (path, backup(path, 1))] == [1, 3]
    assert backup(path, 1).stat().st_size == 3 * LINE
    assert ids_in(backup(path, 1), path) == [event(n).id for n in range(4)]


async def test_rotation_keeps_only_the_configured_number_of_old_files(tmp_path, sinks):
    path = tmp_path / "audit.jsonl"
    sink = sinks(path, max_size=3 * LINE, backups=2)

    for n in range(10):  # 3 + 3 + 3 + 1 lines: the oldest file of three is dropped
        await sink.deliver(event(n))

    assert sorted(
        p.name for p in tmp_path.glob("audit.jsonl*") if not p.name.endswith(".lock")
    ) == [
        "audit.jsonl",
        "audit.jsonl.1",
        "audit.jsonl.2",
    ]
    assert ids_in(backup(path, 2), backup(path, 1), path) == [event(n).id for n in range(3, 10)]
    assert all(p.stat().st_size <= 3 * LINE for p in tmp_path.glob("audit.jsonl*"))


async def test_nothing_is_lost_or_repeated_across_rotations_with_room_for_every_file(
    tmp_path, sinks
):
    path = tmp_path / "audit.jsonl"
    sink = sinks(path, max_size=4 * LINE + 10, backups=10)

    for n in range(30):
        await sink.deliver(event(n))

    files = [backup(path, number) for number in range(10, 0, -1)] + [path]
    assert ids_in(*files) == [event(n).id for n in range(30)]
    assert [len(lines_of(p)) for p in files if p.exists()] == [4] * 7 + [2]


async def test_with_no_backups_a_full_file_starts_over(tmp_path, sinks):
    path = tmp_path / "audit.jsonl"
    sink = sinks(path, max_size=2 * LINE, backups=0)

    for n in range(5):
        await sink.deliver(event(n))

    assert ids_in(path) == [event(4).id]
    assert not backup(path, 1).exists()


async def test_a_line_larger_than_the_size_goes_whole_into_a_fresh_file(tmp_path, sinks):
    path = tmp_path / "audit.jsonl"
    sink = sinks(path, max_size=LINE, backups=3)
    large = event(2, key="k" * 3 * LINE)

    for item in (event(1), large, event(3)):
        await sink.deliver(item)

    assert [decode_event(line) for line in lines_of(backup(path, 2))] == [event(1)]
    assert [decode_event(line) for line in lines_of(backup(path, 1))] == [large]
    assert [decode_event(line) for line in lines_of(path)] == [event(3)]


async def test_a_sink_notices_that_another_rotated_the_file_and_appends_to_the_new_one(
    tmp_path, sinks
):
    path = tmp_path / "audit.jsonl"
    # Two sinks on one path, as two worker processes have: each its own descriptors.
    first = sinks(path, max_size=3 * LINE, backups=10)
    second = sinks(path, max_size=3 * LINE, backups=10)

    for n in range(20):
        await (first if n % 3 else second).deliver(event(n))

    files = [backup(path, number) for number in range(10, 0, -1)] + [path]
    assert ids_in(*files) == [event(n).id for n in range(20)]
    assert all(p.stat().st_size <= 3 * LINE for p in files if p.exists())


async def test_several_processes_appending_at_once_lose_and_split_no_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    writer = textwrap.dedent(
        f"""
        import asyncio, sys
        from datetime import UTC, datetime
        from adapters.audit.sinks.file import FileAuditSink
        from domain.audit import AuditAction, AuditDetails, AuditEvent

        async def main(worker):
            sink = FileAuditSink({str(path)!r}, max_size={8 * LINE}, backups=1000)
            for n in range(60):
                await sink.deliver(AuditEvent(
                    id=f"{{worker}}-{{n}}", execution_id="exec-1", action=AuditAction.GET_INPUT,
                    timestamp=datetime.now(UTC), details=AuditDetails(outcome="ok", key="x" * 50),
                ))
            await sink.close()

        asyncio.run(main(sys.argv[1]))
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", writer, str(worker)]) for worker in range(4)]
    assert [worker.wait(timeout=120) for worker in workers] == [0] * 4

    files = [p for p in tmp_path.glob("audit.jsonl*") if not p.name.endswith(".lock")]
    ids = [decode_event(line).id for p in files for line in lines_of(p)]
    assert sorted(ids) == sorted(f"{worker}-{n}" for worker in range(4) for n in range(60))
    assert all(p.stat().st_size <= 8 * LINE for p in files)


async def test_a_file_that_cannot_be_written_makes_the_sink_unavailable(tmp_path, sinks):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    sink = sinks(blocker / "audit.jsonl", max_size=1 << 20, backups=1)

    with pytest.raises(AuditSinkUnavailableError, match="not-a-folder"):
        await sink.deliver(event(1))


async def test_a_closed_sink_opens_its_file_again_on_the_next_event(tmp_path, sinks):
    path = tmp_path / "audit.jsonl"
    sink = sinks(path, max_size=1 << 20, backups=1)
    await sink.deliver(event(1))

    await sink.close()
    await sink.deliver(event(2))

    assert ids_in(path) == [event(1).id, event(2).id]


# The stdout sink


async def test_the_stdout_sink_writes_one_wire_form_line_per_event_and_nothing_else(capsys):
    sink = StdoutAuditSink()

    await sink.deliver(event(1))
    await sink.deliver(event(2))

    captured = capsys.readouterr()
    assert captured.out.encode() == encode_event(event(1)) + b"\n" + encode_event(event(2)) + b"\n"
    assert captured.err == ""
    assert sink.name == "stdout"


async def test_the_stdout_sink_flushes_each_line_before_it_returns():
    class Recording(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.flushed: list[bytes] = []

        def flush(self) -> None:
            super().flush()
            self.flushed.append(self.getvalue())

    stream = Recording()
    sink = StdoutAuditSink(stream)

    await sink.deliver(event(1))

    assert stream.flushed == [encode_event(event(1)) + b"\n"]


async def test_a_closed_stdout_makes_the_stdout_sink_unavailable():
    stream = io.BytesIO()
    stream.close()

    with pytest.raises(AuditSinkUnavailableError):
        await StdoutAuditSink(stream).deliver(event(1))


def test_the_stdout_sink_reaches_a_real_pipe(tmp_path):
    script = textwrap.dedent(
        """
        import asyncio
        from datetime import UTC, datetime
        from adapters.audit.sinks.stdout import StdoutAuditSink
        from domain.audit import AuditAction, AuditDetails, AuditEvent

        asyncio.run(StdoutAuditSink().deliver(AuditEvent(
            id="id-1", execution_id="exec-1", action=AuditAction.GET_INPUT,
            timestamp=datetime(2026, 11, 28, 19, 4, 5, tzinfo=UTC),
            details=AuditDetails(outcome="ok"),
        )))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=True, env=os.environ
    )

    assert json.loads(done.stdout)["id"] == "id-1"
    assert done.stdout.count(b"\n") == 1
