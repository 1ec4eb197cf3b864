"""The user's variables cached in Valkey, fresh across every replica (SPEC section 7)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import msgspec

from adapters.valkey.client import ValkeyClient
from adapters.valkey.freshness import Freshness
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from application.ports import VariableRepository
from domain.errors import DeadlineExceededError, DependencyError
from domain.model import Variable, VariableSummary

# Fill the cache after a miss (or refresh an entry past its TTL) only while no write holds
# the key's lock, and only if the entry is still the one the reader saw (compared by SHA-1;
# ARGV[3] empty when it saw none): a reader that fetched the store's value before a write
# must never put it back over what the write cached, nor over a deletion's tombstone.
_FILL = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local current = redis.call('GET', KEYS[1])
if current then
  if redis.sha1hex(current) ~= ARGV[3] then return 0 end
elseif ARGV[3] ~= '' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# What a write leaves in the cache, only while its writer still owns the lock: a writer
# whose lock expired mid-write (a slow store) must not overwrite the next writer's entry;
# it deletes the entry instead, and the next read fills it from the store.
_STORE_IF_OWNER = """
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1])
return 0
"""
# Release the lock only if this writer still owns it (it may have expired and been taken).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class CachedVariable(msgspec.Struct, frozen=True, array_like=True):
    """A cache entry: the variable, or that it is not set (`exists` false: a deletion's or a
    miss's tombstone), and when it was cached, so that an entry past its TTL can still be
    served within the stale window while the system of record is down."""

    exists: bool
    cached_at: float
    value: Any = None
    updated_at: datetime | None = None

    def variable(self, key: str) -> Variable | None:
        if not self.exists or self.updated_at is None:
            return None
        return Variable(key=key, value=self.value, updated_at=self.updated_at)


def _tag(user_id: str, key: str) -> str:
    # One hash tag for a variable's value and its lock, so that the scripts touching both
    # run on one cluster node. The tag ends at the first "}", which both keys share. The
    # user id's length keeps ("team", "a/b") and ("team/a", "b") apart.
    return "{" + f"{len(user_id)}:{user_id}/{key}" + "}"


class ValkeyVariableCache(VariableRepository):
    """Read-through, write-through cache of another `VariableRepository`, per user and key.

    - A write takes the key's lock (random owner token, expiring after `lock_ttl`, released
      only by its owner), writes the store, sets the cache, releases. A busy lock is waited
      for, up to `lock_wait`, then `DeadlineExceededError`: never an error at once.
    - A read that misses fills the cache only if no write holds the lock.
    - Valkey unreachable: reads and writes go to the store directly. The keys written then
      are remembered and deleted from the cache as soon as Valkey answers again, so no
      replica keeps serving what this one replaced (if this process dies first, the entry
      lives at most `ttl` + `stale_window`).
    - An entry past `ttl` is refreshed from the store; while the store is unavailable it is
      still served within `stale_window`.

    `on_lookup` hears how each read was answered: "hit" (a fresh entry, a tombstone
    included), "stale" (an entry past `ttl`, while the store is unavailable) or "miss" (the
    store was asked, whether or not it answered).
    """

    def __init__(
        self,
        *,
        inner: VariableRepository,
        client: ValkeyClient,
        gate: ValkeyGate,
        ttl: float,
        stale_window: float,
        lock_ttl: float,
        lock_wait: float,
        prefix: str = "cronium:",
        clock: Callable[[], float] = time.time,
        on_lookup: Callable[[str], None] = lambda result: None,
    ) -> None:
        self._inner = inner
        self._on_lookup = on_lookup
        self._client = client
        self._gate = gate
        self._freshness = Freshness(ttl=ttl, stale_window=stale_window, clock=clock)
        self._lock_ttl_ms = max(1, round(lock_ttl * 1000))
        self._lock_wait = lock_wait
        self._prefix = prefix
        # valkey-py types register_script for its standalone client only; its cluster client
        # has the same method and routes the scripts by their keys.
        self._fill_script = client.register_script(_FILL)  # type: ignore[misc]
        self._release = client.register_script(_RELEASE)  # type: ignore[misc]
        self._store_script = client.register_script(_STORE_IF_OWNER)  # type: ignore[misc]
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(CachedVariable)
        self._unflushed: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None

    def value_key(self, user_id: str, key: str) -> str:
        return f"{self._prefix}var:{_tag(user_id, key)}"

    def lock_key(self, user_id: str, key: str) -> str:
        return f"{self._prefix}lock:{_tag(user_id, key)}"

    async def get(self, user_id: str, key: str) -> Variable | None:
        value_key = self.value_key(user_id, key)
        raw, entry = await self._cached(value_key)
        if entry is not None and self._freshness.fresh(entry.cached_at):
            self._on_lookup("hit")
            return entry.variable(key)
        try:
            variable = await self._inner.get(user_id, key)
        except DependencyError:
            if entry is not None and self._freshness.servable_stale(entry.cached_at):
                self._on_lookup("stale")
                return entry.variable(key)
            self._on_lookup("miss")
            raise
        self._on_lookup("miss")
        await self._fill(user_id, key, variable, seen=raw)
        return variable

    async def put(self, user_id: str, key: str, value: Any, at: datetime) -> Variable:
        async with self._locked(user_id, key) as token:
            variable = await self._inner.put(user_id, key, value, at)
            await self._store(user_id, key, variable, token=token)
            return variable

    async def delete(self, user_id: str, key: str) -> bool:
        async with self._locked(user_id, key) as token:
            deleted = await self._inner.delete(user_id, key)
            await self._store(user_id, key, None, token=token)
            return deleted

    async def list(self, user_id: str) -> list[VariableSummary]:
        return await self._inner.list(user_id)

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher

    # --- Valkey calls, each falling back when Valkey does not answer ---------------------

    async def _cached(self, value_key: str) -> tuple[bytes | None, CachedVariable | None]:
        """The raw entry and its meaning; (None, None) on a miss or when Valkey is away."""
        if not await self._usable("get"):
            return None, None
        try:
            raw = await self._client.get(value_key)
        except UNAVAILABLE as error:
            self._gate.failed("get", error)
            return None, None
        self._gate.succeeded()
        if raw is None:
            return None, None
        try:
            return raw, self._decoder.decode(raw)
        except msgspec.DecodeError:
            return raw, None  # another version's entry: a miss, which the next fill replaces

    async def _fill(
        self, user_id: str, key: str, variable: Variable | None, *, seen: bytes | None
    ) -> None:
        if not self._gate.open:
            return
        keys = [self.value_key(user_id, key), self.lock_key(user_id, key)]
        expected = hashlib.sha1(seen).hexdigest() if seen is not None else ""  # noqa: S324
        try:
            await self._fill_script(
                keys=keys, args=[self._entry(variable), self._freshness.keep_ms, expected]
            )
        except UNAVAILABLE as error:
            self._gate.failed("fill", error)

    async def _store(
        self, user_id: str, key: str, variable: Variable | None, *, token: str | None
    ) -> None:
        """What a write leaves in the cache: the new value, or a deletion's tombstone."""
        value_key = self.value_key(user_id, key)
        if token is None:
            self._remember(value_key)
            return
        try:
            await self._store_script(
                keys=[value_key, self.lock_key(user_id, key)],
                args=[self._entry(variable), self._freshness.keep_ms, token],
            )
        except UNAVAILABLE as error:
            self._gate.failed("set", error)
            self._remember(value_key)

    @contextlib.asynccontextmanager
    async def _locked(self, user_id: str, key: str) -> AsyncIterator[str | None]:
        """Hold the key's lock for the body, yielding the owner token; None when Valkey
        cannot be asked, and the body then writes the store alone."""
        lock_key = self.lock_key(user_id, key)
        token = secrets.token_hex(16)
        locked = await self._usable("lock") and await self._acquire(lock_key, token)
        try:
            yield token if locked else None
        finally:
            if locked:
                try:
                    await self._release(keys=[lock_key], args=[token])
                except UNAVAILABLE as error:
                    self._gate.failed("unlock", error)  # it expires after lock_ttl

    async def _acquire(self, lock_key: str, token: str) -> bool:
        deadline = time.monotonic() + self._lock_wait
        pause = 0.002
        while True:
            try:
                # The second check: a SET whose reply was lost and that the client retried
                # finds the lock already taken, by this very writer.
                if (
                    await self._client.set(lock_key, token, nx=True, px=self._lock_ttl_ms)
                    or await self._client.get(lock_key) == token.encode()
                ):
                    self._gate.succeeded()
                    return True
            except UNAVAILABLE as error:
                self._gate.failed("lock", error)
                return False
            if time.monotonic() + pause > deadline:
                raise DeadlineExceededError(
                    "another write to this variable held it for longer than the request may wait"
                )
            await asyncio.sleep(pause * (0.5 + random.random()))  # noqa: S311 (jitter)
            pause = min(pause * 2, 0.05)

    async def _usable(self, operation: str) -> bool:
        """Whether to ask Valkey now: its gate is open and what this process wrote while it
        was away has been deleted from the cache first."""
        if not self._gate.open:
            self._gate.fell_back(operation)
            return False
        if self._unflushed and not await self._flush():
            self._gate.fell_back(operation)
            return False
        return True

    def _remember(self, value_key: str) -> None:
        self._unflushed.add(value_key)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_until_done())

    async def _flush(self) -> bool:
        for value_key in list(self._unflushed):
            try:
                await self._client.delete(value_key)
            except UNAVAILABLE as error:
                self._gate.failed("invalidate", error)
                return False
            self._unflushed.discard(value_key)
        self._gate.succeeded()
        return True

    async def _flush_until_done(self) -> None:
        pause = 0.1
        while self._unflushed:
            await asyncio.sleep(pause)
            if self._gate.open and await self._flush():
                return
            pause = min(pause * 2, 2.0)

    def _entry(self, variable: Variable | None) -> bytes:
        now = self._freshness.clock()
        if variable is None:
            return self._encoder.encode(CachedVariable(exists=False, cached_at=now))
        return self._encoder.encode(
            CachedVariable(
                exists=True,
                cached_at=now,
                value=variable.value,
                updated_at=variable.updated_at,
            )
        )
