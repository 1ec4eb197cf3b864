"""The spool file: events kept while the outbox cannot be written, replayed into it later
without losing a line, across processes that share the file."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from loguru import logger

from adapters.audit.spool import FileAuditSpool
from application.ports import AuditOutboxUnavailableError
from domain.audit import AuditAction, AuditDetails, AuditEvent, encode_event

AT = datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)
PROCESSES = 4
PER_PROCESS = 50


def event(n: int) -> AuditEvent:
    return AuditEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        execution_id="exec-1",
        action=AuditAction.SET_OUTPUT,
        timestamp=AT + timedelta(milliseconds=n),
        details=AuditDetails(outcome="ok", request_id=f"req-{n}", value_hmac="hmac-sha256:00"),
    )


class Outbox:
    """Takes events into a list; refuses the `refuse_at`-th one (1-based) once."""

    def __init__(self, refuse_at: int | None = None) -> None:
        self.events: list[AuditEvent] = []
        self.refuse_at = refuse_at
        self.calls = 0

    async def append(self, item: AuditEvent) -> None:
        self.calls += 1
        if self.calls == self.refuse_at:
            raise AuditOutboxUnavailableError("Valkey went away again")
        self.events.append(item)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "audit-spool.jsonl"


async def test_spooled_events_are_replayed_in_order_and_then_forgotten(path: Path) -> None:
    spool = FileAuditSpool(path)
    for n in range(5):
        await spool.append(event(n))
    outbox = Outbox()

    moved = await spool.replay(outbox.append)

    assert moved == 5
    assert outbox.events == [event(n) for n in range(5)]
    assert not spool.waiting()
    assert await spool.replay(outbox.append) == 0
    assert len(outbox.events) == 5


async def test_the_spool_is_readable_by_its_owner_only(path: Path) -> None:
    await FileAuditSpool(path).append(event(1))

    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes() == encode_event(event(1)) + b"\n"


async def test_an_event_spooled_during_a_replay_is_kept_for_the_next_one(path: Path) -> None:
    spool, other_process = FileAuditSpool(path), FileAuditSpool(path)
    for n in range(3):
        await spool.append(event(n))
    outbox = Outbox()

    async def append_and_spool_one_more(item: AuditEvent) -> None:
        await outbox.append(item)
        if item == event(1):
            await other_process.append(event(99))

    assert await spool.replay(append_and_spool_one_more) == 3
    assert spool.waiting()
    assert await spool.replay(outbox.append) == 1
    assert outbox.events == [event(0), event(1), event(2), event(99)]


async def test_an_outbox_that_refuses_half_way_leaves_the_rest_spooled(path: Path) -> None:
    spool = FileAuditSpool(path)
    for n in range(5):
        await spool.append(event(n))
    refusing = Outbox(refuse_at=3)

    with pytest.raises(AuditOutboxUnavailableError):
        await spool.replay(refusing.append)
    await spool.append(event(5))  # spooled meanwhile: it comes after the leftovers

    assert refusing.events == [event(0), event(1)]
    outbox = Outbox()
    assert await spool.replay(outbox.append) == 3
    assert await spool.replay(outbox.append) == 1
    assert outbox.events == [event(n) for n in range(2, 6)]


async def test_a_line_torn_by_a_crash_is_logged_and_the_others_replayed(path: Path) -> None:
    spool = FileAuditSpool(path)
    await spool.append(event(1))
    with path.open("ab") as spooled:
        spooled.write(encode_event(event(2))[:40] + b"\n")  # the write a crash cut short
    await spool.append(event(3))
    errors: list[str] = []
    handler = logger.add(errors.append, level="ERROR", format="{message}")
    outbox = Outbox()
    try:
        assert await spool.replay(outbox.append) == 2
    finally:
        logger.remove(handler)

    assert outbox.events == [event(1), event(3)]
    assert len(errors) == 1
    assert "unreadable line" in errors[0]


async def test_a_replay_a_crashed_process_left_is_finished_first(path: Path) -> None:
    spool = FileAuditSpool(path)
    for n in range(2):
        await spool.append(event(n))
    # A process moved the spool aside to replay it, and died before it was done.
    path.rename(spool.replaying_path)
    await spool.append(event(2))
    outbox = Outbox()

    assert await spool.replay(outbox.append) == 2
    assert await spool.replay(outbox.append) == 1
    assert outbox.events == [event(0), event(1), event(2)]
    assert not spool.waiting()


async def test_processes_appending_while_another_replays_lose_nothing(path: Path) -> None:
    writer = textwrap.dedent(
        f"""
        import asyncio, sys
        from datetime import UTC, datetime
        from pathlib import Path
        from adapters.audit.spool import FileAuditSpool
        from domain.audit import AuditAction, AuditDetails, AuditEvent

        async def main(first):
            spool = FileAuditSpool(Path(sys.argv[2]))
            for n in range(first, first + {PER_PROCESS}):
                await spool.append(AuditEvent(
                    id=f"00000000-0000-4000-8000-{{n:012d}}", execution_id="exec-1",
                    action=AuditAction.SET_OUTPUT, timestamp=datetime.now(UTC),
                    details=AuditDetails(outcome="ok")))

        asyncio.run(main(int(sys.argv[1])))
        """
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", writer, str(index * 1000), str(path)])
        for index in range(PROCESSES)
    ]
    spool = FileAuditSpool(path)
    outbox = Outbox()
    try:
        while any(process.poll() is None for process in writers):
            await spool.replay(outbox.append)
            await asyncio.sleep(0.01)
    finally:
        for process in writers:
            process.wait(timeout=30)
    while spool.waiting():
        await spool.replay(outbox.append)

    assert [process.returncode for process in writers] == [0] * PROCESSES
    ids = [item.id for item in outbox.events]
    assert len(ids) == PROCESSES * PER_PROCESS
    assert len(set(ids)) == len(ids)
