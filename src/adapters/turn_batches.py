"""Writes that share a round trip: those made in one turn of the event loop while another
write is in flight go out together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class TurnBatches(Generic[T]):
    """Gathers concurrent writes into one call per turn of the event loop; each caller still
    returns only once its own item was written (or raises its own error).

    - With no write in flight, an item goes at once and alone (`write_one`): batching it
      would cost it a task and a turn of the loop for nothing to share.
    - While one is in flight, the items written in one turn wait, and a task sends them
      together once the turn is over (`write_many`, which answers each item's outcome: None,
      or the exception its caller raises).
    - When `write_many` raises, each of its callers raises `failed(error)`; a cancellation
      of the task is passed on after that.
    - A caller cancelled while it waits leaves its item in the batch: written or not, like a
      lone write cancelled half-way.
    """

    def __init__(
        self,
        *,
        write_one: Callable[[T], Awaitable[None]],
        write_many: Callable[[list[T]], Awaitable[Sequence[BaseException | None]]],
        failed: Callable[[BaseException], BaseException],
    ) -> None:
        self._write_one = write_one
        self._write_many = write_many
        self._failed = failed
        self._batch: list[tuple[T, asyncio.Future[None]]] | None = None
        self._writing = 0  # writes and batches in flight
        self._sending: set[asyncio.Task[None]] = set()  # kept referenced until done

    @property
    def busy(self) -> bool:
        """Whether a write is in flight: the next item will wait for the turn's batch."""
        return self._writing > 0

    async def write(self, item: T) -> None:
        if not self._writing:
            self._writing += 1
            try:
                await self._write_one(item)
            finally:
                self._writing -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._batch is None:
            # The task's first step runs once the callbacks already ready have run: the
            # other writes of this turn join the batch meanwhile.
            self._batch = []
            task = asyncio.create_task(self._send(self._batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        self._batch.append((item, waiter))
        await waiter

    async def _send(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        self._batch = None
        self._writing += 1
        try:
            outcomes = await self._write_many([item for item, _ in batch])
        except BaseException as error:  # no caller may wait forever
            for _, waiter in batch:
                _settle(waiter, self._failed(error))
            if not isinstance(error, Exception):
                raise
            return
        finally:
            self._writing -= 1
        for (_, waiter), outcome in zip(batch, outcomes, strict=True):
            _settle(waiter, outcome)


def _settle(waiter: asyncio.Future[None], error: BaseException | None) -> None:
    if waiter.done():  # its caller was cancelled
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)
