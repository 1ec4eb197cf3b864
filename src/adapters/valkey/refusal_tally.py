"""Requests the rate limit refused, per execution and minute, counted once for every replica."""

from __future__ import annotations

from adapters.memory.refusal_tally import InMemoryRefusalTally
from adapters.valkey.client import ValkeyClient
from adapters.valkey.gate import UNAVAILABLE, ValkeyGate
from application.ports import RefusalTally

# One key per (execution, minute): INCR, and the expiry set by the first, in one atomic step
# so that no key is ever left without one.
_ADD = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""

# Long enough for the owner to read the minute's count after it ends, even while the audit
# log fails for a while; a count read later is at least what the owner saw itself.
KEEP_SECONDS = 600


class ValkeyRefusalTally(RefusalTally):
    """The tally in Valkey: the INCR that answers 1 names the minute's owner, fleet-wide.

    Valkey unreachable: this process counts alone (`fallback`) until it answers again.
    """

    def __init__(
        self,
        *,
        client: ValkeyClient,
        gate: ValkeyGate,
        fallback: InMemoryRefusalTally | None = None,
        prefix: str = "cronium:",
    ) -> None:
        self._client = client
        self._gate = gate
        self._fallback = fallback or InMemoryRefusalTally()
        self._prefix = prefix
        self._add = client.register_script(_ADD)  # type: ignore[misc]

    def _key(self, execution_id: str, minute: int) -> str:
        return f"{self._prefix}refused:{{{execution_id}}}:{minute}"

    async def add(self, execution_id: str, minute: int) -> int:
        if not self._gate.open:
            self._gate.fell_back("refusal_tally")
            return await self._fallback.add(execution_id, minute)
        try:
            count = await self._add(keys=[self._key(execution_id, minute)], args=[KEEP_SECONDS])
        except UNAVAILABLE as error:
            self._gate.failed("refusal_tally", error)
            return await self._fallback.add(execution_id, minute)
        self._gate.succeeded()
        return int(count)

    async def count(self, execution_id: str, minute: int) -> int:
        local = await self._fallback.count(execution_id, minute)
        if not self._gate.open:
            self._gate.fell_back("refusal_tally")
            return local
        try:
            stored = await self._client.get(self._key(execution_id, minute))
        except UNAVAILABLE as error:
            self._gate.failed("refusal_tally", error)
            return local
        self._gate.succeeded()
        # Refusals counted here while Valkey was away are added to the fleet's.
        return int(stored or 0) + local
