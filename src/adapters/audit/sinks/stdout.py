"""The `stdout` audit sink: one wire-form JSON line per event on standard output."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import BinaryIO

from application.ports import AuditSinkUnavailableError, WireAuditSink
from domain.audit import AuditEvent, encode_event


class StdoutAuditSink(WireAuditSink):
    """Writes each event as one line on stdout and flushes it, apart from the logs (which go
    to stderr through the logger), for a collector that reads the container's output.

    One `write` and `flush` per line: on a pipe a line up to PIPE_BUF (4 KiB on Linux) reaches
    the reader whole even when several worker processes share the pipe; a longer line may
    interleave with another process's. Writing runs on a worker thread, so a reader that
    stops reading holds up the audit shipper, never the requests.
    """

    name = "stdout"

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    async def deliver(self, event: AuditEvent) -> None:
        await self.deliver_wire(event, encode_event(event))

    async def deliver_wire(self, event: AuditEvent, wire: bytes) -> None:
        line = wire + b"\n"
        try:
            await asyncio.to_thread(self._write, line)
        except (OSError, ValueError) as error:  # ValueError: the stream was closed
            raise AuditSinkUnavailableError(f"stdout cannot be written: {error}") from error

    async def close(self) -> None:
        """Nothing to release: stdout belongs to the process."""

    def _write(self, line: bytes) -> None:
        # Looked up at each write: whoever replaced sys.stdout (a test, a wrapper) gets it.
        stream = self._stream or sys.stdout.buffer
        with self._lock:
            stream.write(line)
            stream.flush()
