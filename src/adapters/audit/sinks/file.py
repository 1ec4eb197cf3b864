"""The `file` audit sink: JSON lines in `audit.filePath`, rotated at `audit.fileMaxSize`."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from pathlib import Path

from application.ports import AuditSinkUnavailableError, WireAuditSink
from domain.audit import AuditEvent, encode_event


class FileAuditSink(WireAuditSink):
    """Appends one wire-form event per line, on disk (fsync) before `deliver` returns.

    A line that would take the file past `max_size` first rotates it: `audit.jsonl` becomes
    `audit.jsonl.1`, `.1` becomes `.2`, and so on up to `backups` old files; the oldest is
    dropped. A line is never split, so a single line larger than `max_size` still goes whole
    into a fresh file.

    Several processes of one machine may append to the same file: an exclusive `flock` on
    `<path>.lock` (a file never rotated) covers the size check, the rotation and the append,
    so no two processes rotate at once, no line is interleaved with another, and after a
    rotation by one process the others notice that the path names a new file (another inode)
    and reopen it. This holds for processes sharing a local file system, not across machines
    on a network file system whose locks are not shared.
    """

    name = "file"

    def __init__(self, path: Path | str, *, max_size: int, backups: int) -> None:
        self._path = Path(path)
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._max_size = max_size
        self._backups = max(0, backups)
        # Deliveries of this process run on worker threads; one at a time holds the files.
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None

    async def deliver(self, event: AuditEvent) -> None:
        await self.deliver_wire(event, encode_event(event))

    async def deliver_wire(self, event: AuditEvent, wire: bytes) -> None:
        line = wire + b"\n"
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as error:
            raise AuditSinkUnavailableError(
                f"the audit file {self._path} cannot be written: {error.strerror or error}"
            ) from error

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _append(self, line: bytes) -> None:
        with self._thread_lock:
            lock_fd = self._lock_file()
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                fd = self._current_file()
                size = os.fstat(fd).st_size
                if size > 0 and size + len(line) > self._max_size:
                    self._rotate()
                    fd = self._current_file()
                _write_all(fd, line)
                os.fsync(fd)
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _lock_file(self) -> int:
        if self._lock_fd is None:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._lock_fd

    def _current_file(self) -> int:
        """The open file the path names now: reopened when another process rotated it."""
        if self._fd is not None:
            try:
                same = os.stat(self._path).st_ino == os.fstat(self._fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return self._fd
            os.close(self._fd)
            self._fd = None
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self._path, flags, 0o600)
        return self._fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._backups == 0:
            self._path.unlink(missing_ok=True)
        else:
            for number in range(self._backups - 1, 0, -1):
                older = self._backup(number)
                if older.exists():
                    os.replace(older, self._backup(number + 1))
            os.replace(self._path, self._backup(1))
        # The renames are durable before any line goes into the new file.
        directory = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _backup(self, number: int) -> Path:
        return self._path.with_name(f"{self._path.name}.{number}")

    def _close(self) -> None:
        with self._thread_lock:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._lock_fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
