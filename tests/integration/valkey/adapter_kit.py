"""What the Valkey adapter tests share: a manual clock, an observed in-memory store,
constants and small helpers. Their fixtures are in this folder's conftest.py."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import pytest

from adapters.memory.variables import InMemoryVariableRepository
from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import ValkeyGate
from adapters.valkey.variables import CachedVariable, ValkeyVariableCache
from application.ports import VariableRepository
from domain.errors import BackendUnavailableError
from domain.model import Variable, VariableSummary

T = TypeVar("T")

AT = datetime(2026, 11, 28, 19, 4, 5, 123456, tzinfo=UTC)
LATER = AT + timedelta(seconds=1, microseconds=1)
TTL = 60.0
STALE_WINDOW = 3600.0
WAIT = 3.0  # the longest any single step of a test may take

VALUES: dict[str, Any] = {
    "nested": {"a": [1, 2.5, {"b": None, "c": [True, False]}], "d": {"e": {"f": "g"}}},
    "unicode": {"naïve ✓": "日本語 — emoji 🎉", 'quote"and\\slash': "\u0000 and \n"},
    "null": None,
    "empty string": "",
    "empty object": {},
    "empty list": [],
    "zero": 0,
    "false": False,
    "big integer": 2**70,
    "negative big integer": -(2**100),
    "negative float": -1.25e-7,
    "list of mixed": [1, "two", None, {"three": 3}, 1.0, True],
}


# ------------------------------------------------------------------------------- helpers


class ManualClock:
    """A clock that moves only when told: `cache.ttl`, stale windows and gate pauses are
    crossed by `advance`, never by sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Hold:
    """One call of an `ObservedVariables` paused after its work, until `release()`."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    async def wait_reached(self) -> None:
        await asyncio.wait_for(self.reached.wait(), WAIT)

    def release(self) -> None:
        self.released.set()


class ObservedVariables(VariableRepository):
    """An in-memory store that counts its calls, can be made unavailable, runs a hook before
    a call, and can hold its next call of an operation once that call has done its work."""

    def __init__(self, inner: VariableRepository | None = None) -> None:
        self.inner = inner or InMemoryVariableRepository()
        self.calls: Counter[str] = Counter()
        self.unavailable = False
        self.before: dict[str, Callable[[], Awaitable[None]]] = {}
        self._holds: dict[str, Hold] = {}

    def hold_next(self, operation: str) -> Hold:
        hold = Hold()
        self._holds[operation] = hold
        return hold

    async def _call(self, operation: str, work: Callable[[], Awaitable[T]]) -> T:
        self.calls[operation] += 1
        if self.unavailable:
            raise BackendUnavailableError("the store is down (test)")
        if operation in self.before:
            await self.before[operation]()
        result = await work()
        hold = self._holds.pop(operation, None)
        if hold is not None:
            hold.reached.set()
            await asyncio.wait_for(hold.released.wait(), WAIT)
        return result

    async def get(self, user_id: str, key: str) -> Variable | None:
        return await self._call("get", lambda: self.inner.get(user_id, key))

    async def put(self, user_id: str, key: str, value: Any, at: datetime) -> Variable:
        return await self._call("put", lambda: self.inner.put(user_id, key, value, at))

    async def delete(self, user_id: str, key: str) -> bool:
        return await self._call("delete", lambda: self.inner.delete(user_id, key))

    async def list(self, user_id: str) -> list[VariableSummary]:
        return await self._call("list", lambda: self.inner.list(user_id))


def same_json(left: Any, right: Any) -> bool:
    """Equal as JSON, types included (`True` is not `1`, `1.0` is not `1`)."""
    return msgspec.json.encode(left) == msgspec.json.encode(right)


async def cached_entry(raw: ValkeyClient, key: str) -> CachedVariable | None:
    """What Valkey holds under `key`, decoded as the variable cache writes it."""
    data = await raw.get(key)
    return None if data is None else msgspec.json.decode(data, type=CachedVariable)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = WAIT) -> None:
    """Polls `check` until it holds; fails after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"the condition did not hold within {within}s")
        await asyncio.sleep(0.02)


OpenClient = Callable[..., ValkeyClient]
MakeGate = Callable[..., ValkeyGate]
MakeCache = Callable[..., ValkeyVariableCache]


@dataclass(frozen=True)
class Kit:
    """The shared fixtures in one, for tests that need many of them."""

    url: str
    raw: ValkeyClient
    store: ObservedVariables
    clock: ManualClock
    fallbacks: list[str]
    open_client: OpenClient
    make_gate: MakeGate
    make_cache: MakeCache
