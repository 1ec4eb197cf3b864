"""The local store: one SQLite file in WAL mode, shared safely by every process on the machine."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from adapters.sqlite.schema import MIGRATIONS
from application.ports import HealthProbe
from domain.errors import BackendUnavailableError
from domain.model import DependencyHealth

T = TypeVar("T")

DATABASE_FILE = "runtime.db"
BUSY_TIMEOUT = 5.0  # seconds a statement waits for another process's lock before failing
WAL_RETRY_INTERVAL = 0.01


class StoreClosedError(RuntimeError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"the local store {path} is not open")


class SqliteStore:
    """Owns `<folder>/runtime.db` and the one connection to it.

    The connection lives on one dedicated thread, so a blocking call (a query, or a
    `busy_timeout` wait while another process writes) never blocks the event loop, and
    calls run one after another in the order they were made.
    """

    def __init__(self, folder: Path | str, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.folder = Path(folder)
        self.path = self.folder / DATABASE_FILE
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Create the folder and file if missing, connect, set the pragmas, migrate."""
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        try:
            loop = asyncio.get_running_loop()
            self._connection = await loop.run_in_executor(executor, self._connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor

    async def close(self) -> None:
        """Close the connection after every call already made, then stop the thread."""
        executor, connection = self._executor, self._connection
        if executor is None or connection is None:
            return
        self._executor = self._connection = None
        try:
            await asyncio.get_running_loop().run_in_executor(executor, connection.close)
        finally:
            # The thread has nothing left to run, so this does not wait.
            executor.shutdown(wait=False)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the store's thread, in one read transaction (one snapshot)."""
        return await self._run(fn, "BEGIN")

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the store's thread, in one write transaction.

        `BEGIN IMMEDIATE` takes the file's write lock at once (waiting up to `busy_timeout`
        for another process), so a transaction never fails half-way for want of it. A caller
        cancelled while it waits does not cancel the transaction: it still runs to its end.
        """
        return await self._run(fn, "BEGIN IMMEDIATE")

    async def _run(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        executor, connection = self._executor, self._connection
        if executor is None or connection is None:
            raise StoreClosedError(self.path)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, _transaction, connection, begin, fn)
        except sqlite3.OperationalError as error:
            # Locked past busy_timeout, disk full, I/O error: the store is the embedded
            # system of record, so this is the "backend unavailable" of the contract (503,
            # which the helpers retry), never a 500.
            raise BackendUnavailableError(f"the local store cannot be used: {error}") from error

    def _connect(self) -> sqlite3.Connection:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before SQLite sees it; the -wal and -shm files take the same mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        # isolation_level=None: the module starts no transaction of its own; ours are explicit.
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            # First, so that every later statement waits for a busy file instead of failing.
            connection.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout * 1000)}")
            _enter_wal_mode(connection, deadline=time.monotonic() + self._busy_timeout)
            # NORMAL in WAL mode syncs at checkpoints, not at every commit: a power loss or
            # OS crash may lose the last transactions, but never corrupts the file. A crash
            # of this process alone loses nothing.
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
            _transaction(connection, "BEGIN IMMEDIATE", _migrate)
        except BaseException:
            connection.close()
            raise
        return connection


def _enter_wal_mode(connection: sqlite3.Connection, *, deadline: float) -> None:
    """Switch the file to WAL (it stays so), retrying while another process holds a lock.

    SQLite answers "database is locked" at once, without the busy handler, when a process
    asks for WAL while another holds a write lock: two processes creating the file together.
    """
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(WAL_RETRY_INTERVAL)
            continue
        if mode != "wal":  # a file system without shared memory, for one
            raise RuntimeError(f"the local store cannot use WAL mode (it stays {mode!r})")
        return


def _transaction(
    connection: sqlite3.Connection, begin: str, fn: Callable[[sqlite3.Connection], T]
) -> T:
    connection.execute(begin)
    try:
        result = fn(connection)
        connection.execute("COMMIT")
    except BaseException:
        # Some errors (a full disk, an I/O error) have already rolled the transaction back.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring the schema to the newest version; run inside `BEGIN IMMEDIATE`, so when two
    processes open a new file at once, the second finds the work done."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the local store has schema version {version}, newer than this build's"
            f" {len(MIGRATIONS)}: it was written by a newer cronium-runtime"
        )
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            connection.execute(statement)
    connection.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


class SqliteHealthProbe(HealthProbe):
    """The store answers a trivial query."""

    def __init__(self, store: SqliteStore, *, name: str = "store") -> None:
        self.name = name
        self._store = store

    async def check(self) -> DependencyHealth:
        started = time.perf_counter()
        try:
            await self._store.read(_select_one)
        except Exception as error:
            return DependencyHealth(
                status="down",
                latency_ms=_elapsed_ms(started),
                error=f"{type(error).__name__}: {error}",
            )
        return DependencyHealth(status="up", latency_ms=_elapsed_ms(started))


def _select_one(connection: sqlite3.Connection) -> None:
    connection.execute("SELECT 1").fetchone()


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def encode_time(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds and `Z`; a naive time is taken to be UTC."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def decode_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def encode_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def decode_json(text: str) -> Any:
    return msgspec.json.decode(text)
