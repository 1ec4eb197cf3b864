"""The audit outbox in Valkey: one stream, read by one consumer group (SPEC section 9)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from loguru import logger
from valkey.exceptions import ResponseError

from adapters.turn_batches import TurnBatches
from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from application.ports import AuditOutbox, AuditOutboxUnavailableError, OutboxBacklog, OutboxEntry
from domain.audit import AuditEvent, decode_wire, encode_event

T = TypeVar("T")

STREAM_KEY = "cronium:audit:outbox"
GROUP = "cronium-runtime"

# Forget a consumer that stopped, unless it still holds entries: checked and done in one
# script, so that no claim can slip in between (deleting a consumer drops its pending
# entries from the group, and they would never be delivered).
_FORGET_CONSUMER = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class ValkeyAuditOutbox(AuditOutbox):
    """`cronium:audit:outbox`, a stream every process appends to (XADD) and reads through
    the consumer group `cronium-runtime`, each process under a consumer name of its own.

    - A claim reads this consumer's pending entries again (XREADGROUP from 0, which also
      restarts their idle time, so that no other process takes them while this one lives),
      then takes the entries another consumer left idle for `claim_idle` (XAUTOCLAIM: that
      process stopped), then new ones (XREADGROUP `>`). `ack` is XACK.
    - One key, so one hash slot: the same commands work on a cluster.
    - `append` costs a round trip, which concurrent requests share. With no append in
      flight, an XADD goes at once; while one is, the appends made in one turn of the event
      loop go to Valkey as one pipeline of XADDs (not a transaction: each stands alone), sent
      when the turn is over. Each caller returns once its own XADD was answered, so every
      event is still persisted before its request's reply (SPEC section 9); when the
      pipeline fails, each of its callers gets the error a lone XADD would have had, and
      falls back as it would have. (A lone append is not batched: that would cost it a task
      and a turn of the loop for nothing to share.)
    - Trimming (XTRIM MINID) removes only entries that are both acknowledged, i.e. below the
      oldest pending entry and the first entry not yet read by the group, and older than
      `max_age`. Never MAXLEN: a length limit counts entries, not deliveries, so during a
      sink outage the stream would outgrow it and the oldest entries, never delivered, would
      be deleted.
    - Every command goes through the process's `ValkeyGate`, so that the outbox and every
      other adapter agree on "Valkey is away" and none waits for it while it is.
    """

    def __init__(
        self,
        *,
        client: ValkeyClient,
        gate: ValkeyGate,
        consumer: str,
        claim_idle: float,
        max_age: float,
        key: str = STREAM_KEY,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._gate = gate
        self._consumer = consumer
        self._claim_idle_ms = max(1, round(claim_idle * 1000))
        self._max_age_ms = round(max_age * 1000)
        self._key = key
        self._wall_clock = wall_clock
        self._group_ready = False
        self._autoclaim_cursor = "0-0"
        self._forget_consumer = client.register_script(_FORGET_CONSUMER)  # type: ignore[misc]
        self._appends: TurnBatches[dict[str, bytes]] = TurnBatches(
            write_one=self._xadd_one, write_many=self._xadd_many, failed=_unavailable
        )

    async def append(self, event: AuditEvent) -> None:
        fields = {"id": event.id.encode(), "event": encode_event(event)}
        if self._appends.busy and not self._gate.open:
            self._gate.fell_back("audit")
            raise AuditOutboxUnavailableError(f"Valkey is unavailable ({self._gate.last_error})")
        await self._appends.write(fields)

    async def claim(self, count: int) -> list[OutboxEntry]:
        return await self._call(lambda: self._grouped(lambda: self._claim(count)))

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._call(lambda: self._client.xack(self._key, GROUP, *entry_ids))

    async def backlog(self) -> OutboxBacklog:
        return await self._call(self._backlog)

    async def trim(self) -> int:
        return await self._call(self._trim)

    # --- the commands -------------------------------------------------------------------

    async def _xadd_one(self, fields: dict[str, bytes]) -> None:
        await self._call(lambda: self._client.xadd(self._key, fields), fallback="audit")

    async def _xadd_many(
        self, batch: list[dict[str, bytes]]
    ) -> list[AuditOutboxUnavailableError | None]:
        """One round trip for the batch's XADDs (a pipeline, not a transaction: each stands
        alone); each gets its own outcome, an XADD refused alone (a full Valkey's OOM) its
        answer's error."""
        try:
            if len(batch) == 1:
                answers: list[Any] = [await self._client.xadd(self._key, batch[0])]
            else:
                pipeline = self._client.pipeline(transaction=False)
                for fields in batch:
                    pipeline.xadd(self._key, fields)
                answers = await pipeline.execute(raise_on_error=False)
        except UNAVAILABLE as error:
            if not isinstance(error, ResponseError) or _is_outage(error):
                self._gate.mark_down(error)  # once: one failure of Valkey, not one per event
            for _ in batch:
                self._gate.fell_back("audit")
            return [_unavailable(error)] * len(batch)
        outcomes: list[AuditOutboxUnavailableError | None] = []
        outage = False
        for answer in answers:
            if isinstance(answer, Exception):
                if isinstance(answer, ResponseError) and _is_outage(answer):
                    outage = True
                    self._gate.mark_down(answer)
                self._gate.fell_back("audit")
                outcomes.append(_unavailable(answer))
            else:
                outcomes.append(None)
        if not outage:
            self._gate.succeeded()
        return outcomes

    async def _claim(self, count: int) -> list[OutboxEntry]:
        entries = await self._read(count, "0")
        if len(entries) < count:
            # [next cursor, claimed entries, ids deleted meanwhile (dropped from the group)]
            answer = await self._client.xautoclaim(
                self._key,
                GROUP,
                self._consumer,
                self._claim_idle_ms,
                start_id=self._autoclaim_cursor,
                count=count - len(entries),
            )
            self._autoclaim_cursor = _text(answer[0])
            entries += await self._entries(answer[1])
        if len(entries) < count:
            entries += await self._read(count - len(entries), ">")
        return entries

    async def _read(self, count: int, start: str) -> list[OutboxEntry]:
        answer = await self._client.xreadgroup(
            GROUP, self._consumer, {self._key: start}, count=count
        )
        return await self._entries(answer[0][1] if answer else [])

    async def _entries(self, raw: list[tuple[Any, Any]]) -> list[OutboxEntry]:
        entries, unusable = [], []
        for raw_id, fields in raw:
            entry_id = _text(raw_id)
            data = (fields or {}).get(b"event")
            if data is None:  # trimmed while pending: cannot happen with our trim, but harmless
                unusable.append(entry_id)
                continue
            try:
                event, wire = decode_wire(data)
            except ValueError:
                # No build can deliver it, and it would be claimed forever: it leaves the
                # stream for the log, whole (events hold no values, only their HMACs).
                logger.error(
                    "audit outbox entry {entry} cannot be decoded and is removed; it was: {data}",
                    entry=entry_id,
                    data=data.decode(errors="replace"),
                )
                unusable.append(entry_id)
                continue
            entries.append(OutboxEntry(entry_id=entry_id, event=event, wire=wire))
        if unusable:
            await self._client.xack(self._key, GROUP, *unusable)
        return entries

    async def _backlog(self) -> OutboxBacklog:
        group = await self._group_info()
        if group is None:
            return OutboxBacklog(pending=0, oldest_age=None)
        floor = await self._oldest_pending(group)
        lag = group.get("lag")
        if lag is None:  # Valkey cannot tell (rare): count what the group has not read
            lag = len(await self._unread(group, count=None))
        age = None
        if floor is not None:
            age = max(0.0, self._wall_clock() - floor[0] / 1000)
        return OutboxBacklog(pending=int(group["pending"]) + int(lag), oldest_age=age)

    async def _trim(self) -> int:
        groups = await self._groups()
        if not groups:
            return 0  # no group has read anything: every entry is still to be delivered
        floor = (round(self._wall_clock() * 1000) - self._max_age_ms, 0)
        for group in groups:
            oldest = await self._oldest_pending(group)
            if oldest is not None:
                floor = min(floor, oldest)
        removed = 0
        if floor[0] > 0:
            removed = await self._client.xtrim(
                self._key, minid=f"{floor[0]}-{floor[1]}", approximate=False
            )
        await self._forget_stopped_consumers()
        return removed

    async def _forget_stopped_consumers(self) -> None:
        """A consumer name per process start would pile up in the group: forget those that
        have held nothing and read nothing for `claim_idle`."""
        try:
            consumers = await self._client.xinfo_consumers(self._key, GROUP)
        except ResponseError:
            return  # no group yet
        for consumer in consumers:
            name = _text(consumer["name"])
            if (
                name == self._consumer
                or consumer["pending"]
                or consumer["idle"] < self._claim_idle_ms
            ):
                continue
            await self._forget_consumer(keys=[self._key], args=[GROUP, name])

    async def _oldest_pending(self, group: dict[str, Any]) -> tuple[int, int] | None:
        """The oldest entry the group has not acknowledged: its oldest pending one, or else
        the first it has not read."""
        candidates = []
        if int(group["pending"]):
            summary = await self._client.xpending(self._key, _text(group["name"]))
            if summary.get("min") is not None:
                candidates.append(_stream_id(summary["min"]))
        unread = await self._unread(group, count=1)
        if unread:
            candidates.append(_stream_id(unread[0][0]))
        return min(candidates) if candidates else None

    async def _unread(self, group: dict[str, Any], *, count: int | None) -> list[Any]:
        last = _text(group["last-delivered-id"])
        entries: list[Any] = await self._client.xrange(self._key, min=f"({last}", count=count)
        return entries

    async def _group_info(self) -> dict[str, Any] | None:
        for group in await self._groups():
            if _text(group["name"]) == GROUP:
                return group
        return None

    async def _groups(self) -> list[dict[str, Any]]:
        try:
            groups: list[dict[str, Any]] = await self._client.xinfo_groups(self._key)
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return []
            raise
        return groups

    async def _grouped(self, read: Callable[[], Awaitable[T]]) -> T:
        """`read`, after creating the group if this process has not seen it yet, and again
        once if the group is gone (the stream was deleted, or Valkey lost its data)."""
        if not self._group_ready:
            await self._create_group()
        try:
            return await read()
        except ResponseError as error:
            if not str(error).startswith("NOGROUP"):
                raise
            logger.warning("the audit outbox stream had no consumer group; creating it again")
            await self._create_group()
            return await read()

    async def _create_group(self) -> None:
        try:
            # From the stream's start: entries appended before the group existed are
            # delivered too.
            await self._client.xgroup_create(self._key, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if not str(error).startswith("BUSYGROUP"):
                raise
        self._group_ready = True
        self._autoclaim_cursor = "0-0"

    async def _call(self, command: Callable[[], Awaitable[T]], *, fallback: str = "") -> T:
        """`command` through the gate; any Valkey error is the outbox being unavailable (a
        full Valkey refuses XADD with OOM, and the event must then be spooled), and those of
        an outage also close the gate."""
        if not self._gate.open:
            if fallback:
                self._gate.fell_back(fallback)
            raise AuditOutboxUnavailableError(f"Valkey is unavailable ({self._gate.last_error})")
        try:
            result = await command()
        except UNAVAILABLE as error:
            if not isinstance(error, ResponseError) or _is_outage(error):
                if fallback:
                    self._gate.failed(fallback, error)
                else:
                    self._gate.mark_down(error)
            elif fallback:
                self._gate.fell_back(fallback)
            raise AuditOutboxUnavailableError(
                f"the audit outbox cannot be used: {type(error).__name__}: {error}"
            ) from error
        self._gate.succeeded()
        return result


def _unavailable(error: BaseException) -> AuditOutboxUnavailableError:
    unavailable = AuditOutboxUnavailableError(
        f"the audit outbox cannot be used: {type(error).__name__}: {error}"
    )
    unavailable.__cause__ = error
    return unavailable


def _is_outage(error: ResponseError) -> bool:
    """Errors Valkey answers while it cannot serve (loading its data, a cluster moving), as
    opposed to a wrong command: the outbox is unavailable, not broken."""
    text = str(error)
    return text.startswith(
        ("LOADING", "BUSY ", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY")
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stream_id(value: Any) -> tuple[int, int]:
    milliseconds, _, sequence = _text(value).partition("-")
    return int(milliseconds), int(sequence or 0)
