"""TurnBatches: concurrent writes share one call, and each caller keeps its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from adapters.turn_batches import TurnBatches


class Refused(Exception):
    pass


class Store:
    """Records the calls; each write waits for `gate` so that others pile up meanwhile."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.written: list[str] = []
        self.refuse = refuse
        self.gate = asyncio.Event()
        self.gate.set()
        self.broken: BaseException | None = None

    async def one(self, item: str) -> None:
        self.calls.append([item])
        await self.gate.wait()
        if item in self.refuse:
            raise Refused(item)
        self.written.append(item)

    async def many(self, items: list[str]) -> Sequence[BaseException | None]:
        self.calls.append(list(items))
        await self.gate.wait()
        if self.broken is not None:
            raise self.broken
        self.written += [item for item in items if item not in self.refuse]
        return [Refused(item) if item in self.refuse else None for item in items]


def batches(store: Store) -> TurnBatches[str]:
    return TurnBatches(
        write_one=store.one,
        write_many=store.many,
        failed=lambda error: Refused(f"batch failed: {error!r}"),
    )


async def test_a_write_with_nothing_in_flight_goes_alone_and_at_once() -> None:
    store = Store()
    writes = batches(store)

    await writes.write("a")
    await writes.write("b")

    assert store.calls == [["a"], ["b"]]
    assert not writes.busy


async def test_writes_made_while_one_is_in_flight_share_one_call_and_each_waits_for_it() -> None:
    store = Store()
    store.gate.clear()
    writes = batches(store)

    first = asyncio.create_task(writes.write("first"))
    await asyncio.sleep(0)
    assert writes.busy
    others = [asyncio.create_task(writes.write(name)) for name in ("b", "c", "d")]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not any(task.done() for task in others)  # nothing written yet: no one returns

    store.gate.set()
    await asyncio.gather(first, *others)

    assert store.calls == [["first"], ["b", "c", "d"]]
    assert sorted(store.written) == ["b", "c", "d", "first"]


async def test_an_item_refused_alone_fails_its_own_caller_only() -> None:
    store = Store(refuse=frozenset({"c"}))
    store.gate.clear()
    writes = batches(store)
    first = asyncio.create_task(writes.write("first"))
    await asyncio.sleep(0)
    others = {name: asyncio.create_task(writes.write(name)) for name in ("b", "c")}
    store.gate.set()

    await first
    await others["b"]
    with pytest.raises(Refused, match="c"):
        await others["c"]


async def test_a_failed_call_fails_every_caller_of_its_batch_with_the_mapped_error() -> None:
    store = Store()
    store.gate.clear()
    store.broken = ConnectionError("gone")
    writes = batches(store)
    first = asyncio.create_task(writes.write("first"))
    await asyncio.sleep(0)
    others = [asyncio.create_task(writes.write(name)) for name in ("b", "c")]
    store.gate.set()

    await first
    for task in others:
        with pytest.raises(Refused, match="batch failed: ConnectionError"):
            await task
    assert not writes.busy


async def test_a_caller_cancelled_while_it_waits_leaves_its_item_in_the_batch() -> None:
    store = Store()
    store.gate.clear()
    writes = batches(store)
    first = asyncio.create_task(writes.write("first"))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(writes.write("leaving"))
    staying = asyncio.create_task(writes.write("staying"))
    await asyncio.sleep(0)
    leaving.cancel()
    store.gate.set()

    await asyncio.gather(first, staying)
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert sorted(store.written) == ["first", "leaving", "staying"]
