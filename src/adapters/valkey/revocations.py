"""Revocations shared by every replica through one Valkey stream (SPEC section 2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.memory.revocations import RevocationFeed
from adapters.sqlite.revocations import SqliteRevocationList
from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from domain.errors import DependencyError

DEFAULT_PAGE = 1000
# Add a revocation, trimming the entries older than ARGV[3] ms by the server's own clock
# (entry ids are its milliseconds), so that a replica whose clock runs ahead cannot trim
# revocations still in force. `~`: whole nodes of entries only, cheap for the server.
_ADD = """
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3])
if oldest < 0 then oldest = 0 end
return redis.call('XADD', KEYS[1], 'MINID', '~', oldest, '*', 'e', ARGV[1], 'u', ARGV[2])
"""


class ValkeyRevocationFeed(RevocationFeed):
    """Each revocation is an entry `{e: execution id, u: until}` of the stream
    `<prefix>revocations`. A process reads the entries after the last one it read (XREAD),
    so a refresh is one command that returns only what is new, whatever the number of
    revocations kept. Each new entry trims those older than `keep_for` by the server's
    clock: they have ended.

    Valkey unreachable (it failed, or the shared `ValkeyGate` is pausing after a failure):

    - `publish` writes the revocation to `local` (the machine's SQLite store) instead, never
      failing for Valkey's sake;
    - `updates` always includes what `local` has seen change, so the processes of one
      machine share their revocations during an outage as without Valkey;
    - once Valkey answers again, and at its first answer after start, every revocation in
      `local` is added to the stream: those this process made during the outage, and those
      of a process on this machine that stopped before it could add them. The remaining
      risk: a replica on another machine accepts the tokens of an execution revoked here
      during the outage until Valkey answers this process again.
    """

    def __init__(
        self,
        *,
        client: ValkeyClient,
        gate: ValkeyGate,
        local: SqliteRevocationList,
        keep_for: float,
        prefix: str = "cronium:",
        page: int = DEFAULT_PAGE,
    ) -> None:
        self._client = client
        self._gate = gate
        self._local = local
        self._prefix = prefix
        self._page = page
        self._keep_ms = max(1, round(keep_for * 1000))
        self._add_script = client.register_script(_ADD)  # type: ignore[misc]
        self._last_id: bytes = b"0-0"
        self._owes_push = True

    @property
    def stream_key(self) -> str:
        return f"{self._prefix}revocations"

    async def publish(self, execution_id: str, until: float) -> None:
        if not self._gate.open:
            self._gate.fell_back("revoke")
        else:
            try:
                await self._add(execution_id, until)
            except UNAVAILABLE as error:
                self._gate.failed("revoke", error)
            else:
                self._gate.succeeded()
                return
        self._owes_push = True
        await self._local.publish(execution_id, until)

    async def updates(self) -> list[tuple[str, float]]:
        from_valkey = await self._valkey_updates()
        try:
            from_local = await self._local.updates()
        except DependencyError:
            if from_valkey is None:
                raise
            return from_valkey  # the store's trouble is readiness's to report, not ours
        return [*(from_valkey or ()), *from_local]

    async def _valkey_updates(self) -> list[tuple[str, float]] | None:
        """What is new in the stream, after adding what is owed; None when Valkey is away."""
        if not self._gate.open:
            self._gate.fell_back("revocations")
            return None
        try:
            if self._owes_push:
                await self._push_local()
            found = await self._read_new()
        except UNAVAILABLE as error:
            # What another process of this machine wrote to the store meanwhile is owed too.
            self._owes_push = True
            self._gate.failed("revocations", error)
            return None
        self._gate.succeeded()
        return found

    async def _push_local(self) -> None:
        try:
            owed = await self._local.active()
        except DependencyError:
            return  # still owed: tried again at the next refresh
        for execution_id, until in owed:
            await self._add(execution_id, until)
        self._owes_push = False

    async def _add(self, execution_id: str, until: float) -> None:
        await self._add_script(
            keys=[self.stream_key], args=[execution_id, repr(until), self._keep_ms]
        )

    async def _read_new(self) -> list[tuple[str, float]]:
        found: list[tuple[str, float]] = []
        while True:
            reply = await self._client.xread({self.stream_key: self._last_id}, count=self._page)
            entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                self._last_id = entry_id
                if (revocation := _revocation(fields)) is not None:
                    found.append(revocation)
            if len(entries) < self._page:
                return found


def _revocation(fields: Mapping[Any, Any]) -> tuple[str, float] | None:
    """The entry's execution and end; None for an entry this version cannot read."""
    execution_id, until = fields.get(b"e"), fields.get(b"u")
    if not isinstance(execution_id, bytes) or not isinstance(until, bytes):
        return None
    try:
        return execution_id.decode(), float(until)
    except (UnicodeDecodeError, ValueError):
        return None
