"""The audit spool: a local file of events recorded while the outbox could not be written."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from loguru import logger

from application.ports import AuditSpool
from domain.audit import AuditEvent, decode_event, encode_event

REPLAY_CHUNK = 256  # lines read from the file at a time while replaying


class FileAuditSpool(AuditSpool):
    """JSON lines (the events' wire form) at `path`, each written and fsync'd before
    `append` returns; several processes may share the file (the workers of one machine).

    Replaying moves the file aside, to `<path>.replaying`, and works from there, so that a
    line appended meanwhile goes to a new `<path>` and is never lost with the replayed ones.
    Two locks keep the processes apart:
    - `<path>.lock`: appends hold it shared, the move aside exclusive, so no append is
      half-way into the file being moved;
    - `<path>.replaying` itself, held exclusive by the one process replaying it.
    When the outbox refuses an event half-way, the replayed lines are cut off and the rest
    stays in `<path>.replaying`, replayed first next time. A process that dies while
    replaying leaves the file whole: its events are appended to the outbox again (at least
    once; the sinks keep one copy per id).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replaying_path = path.with_name(path.name + ".replaying")
        self._lock_path = path.with_name(path.name + ".lock")
        self._replay_lock = asyncio.Lock()

    def waiting(self) -> bool:
        """Whether events wait in the spool."""
        return _has_data(self.path) or self.replaying_path.exists()

    async def append(self, event: AuditEvent) -> None:
        await asyncio.to_thread(self._append, encode_event(event) + b"\n")

    async def replay(self, into: Callable[[AuditEvent], Awaitable[None]]) -> int:
        if not self.waiting():  # one stat, the usual case: nothing spooled
            return 0
        async with self._replay_lock:
            replaying = await asyncio.to_thread(self._take)
            if replaying is None:
                return 0  # another process is replaying it
            try:
                return await self._replay(replaying, into)
            finally:
                replaying.close()

    async def _replay(
        self, replaying: _Replaying, into: Callable[[AuditEvent], Awaitable[None]]
    ) -> int:
        moved = 0
        while lines := await asyncio.to_thread(replaying.read, REPLAY_CHUNK):
            for offset, line in lines:
                try:
                    event = decode_event(line.rstrip(b"\n"))
                except ValueError:
                    # A line torn by a crash while it was written: nothing can deliver it.
                    # It goes to the log, whole (events hold no values, only their HMACs).
                    logger.error(
                        "the audit spool {path} has an unreadable line at byte {offset},"
                        " which is skipped: {line}",
                        path=replaying.path,
                        offset=offset,
                        line=line.decode(errors="replace"),
                    )
                    continue
                try:
                    await into(event)
                except Exception:
                    await asyncio.to_thread(replaying.keep_from, offset)
                    raise
                moved += 1
        await asyncio.to_thread(replaying.finish)
        return moved

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked(fcntl.LOCK_SH):
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                # One write of the whole line: with O_APPEND, lines of several processes
                # never interleave.
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _sync_folder(self.path.parent)

    def _take(self) -> _Replaying | None:
        """The file to replay, locked for this process: `<path>.replaying` if a replay was
        left unfinished, else `<path>` moved there; None when another process is replaying
        or nothing is spooled."""
        with self._locked(fcntl.LOCK_EX):
            if not self.replaying_path.exists():
                if not _has_data(self.path):
                    return None
                os.replace(self.path, self.replaying_path)
                _sync_folder(self.path.parent)
        try:
            fd = os.open(self.replaying_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Still the file at that path? Another process may have finished it (and
            # removed it) between our open and our lock.
            if os.fstat(fd).st_ino != os.stat(self.replaying_path).st_ino:
                raise FileNotFoundError(self.replaying_path)
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        return _Replaying(self.replaying_path, fd)

    @contextlib.contextmanager
    def _locked(self, operation: int) -> Iterator[None]:
        self._lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, operation)
            yield
        finally:
            os.close(fd)  # and with it the lock


class _Replaying:
    """`<path>.replaying`, open and locked by this process (closing it unlocks it)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._file = os.fdopen(fd, "rb")

    def read(self, count: int) -> list[tuple[int, bytes]]:
        """The next `count` lines at most, each with the byte offset where it starts."""
        lines: list[tuple[int, bytes]] = []
        while len(lines) < count:
            offset = self._file.tell()
            line = self._file.readline()
            if not line:
                break
            lines.append((offset, line))
        return lines

    def keep_from(self, offset: int) -> None:
        """Keep only the lines from `offset` on: the ones before it are in the outbox."""
        partial = self.path.with_name(self.path.name + ".partial")
        self._file.seek(offset)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as rest:
            shutil.copyfileobj(self._file, rest)
            rest.flush()
            os.fsync(rest.fileno())
        os.replace(partial, self.path)
        _sync_folder(self.path.parent)

    def finish(self) -> None:
        """Every line is in the outbox."""
        self.path.unlink()
        _sync_folder(self.path.parent)

    def close(self) -> None:
        self._file.close()


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _sync_folder(folder: Path) -> None:
    """Make a file's creation, move or removal durable (its folder's entry)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
