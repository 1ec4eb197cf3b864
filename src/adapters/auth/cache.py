"""Tokens already verified, so that a script's requests cost one signature check in all."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from application.ports import TokenVerifier
from domain.model import Principal

DEFAULT_MAX_ENTRIES = 10_000


class CachedTokenVerifier(TokenVerifier):
    """Remembers the principal of each token `inner` accepted.

    - Keyed by the token's SHA-256, never by the token itself, so the cache holds nothing
      that opens an execution.
    - At most `max_entries` tokens, the least recently used forgotten first.
    - An entry is served only while the clock is before the token's `exp`; from then on the
      token goes back to `inner`, which applies the leeway and refuses it (TOKEN_EXPIRED)
      exactly when it would have without the cache.
    - Refusals are not kept: repeating one costs an HMAC and no I/O, and keeping them would
      let anyone push the good tokens out of the cache with junk; only a token signed with
      one of the service's keys can take a place. A refused `nbf` may also become valid.
    - Revocation is not checked here: the edge asks the revocation list after every
      verification, cached or not, so a revocation wins at once.
    - `on_verification` is called for every token handed to `inner` (the metric of
      signature checks performed).
    """

    def __init__(
        self,
        inner: TokenVerifier,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
        on_verification: Callable[[], None] = lambda: None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._inner = inner
        self._max_entries = max_entries
        self._clock = clock
        self._on_verification = on_verification
        self._entries: OrderedDict[bytes, Principal] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        key = hashlib.sha256(token.encode()).digest()
        cached = self._entries.get(key)
        if cached is not None:
            if self._usable(cached):
                self._entries.move_to_end(key)
                return cached
            del self._entries[key]
        self._on_verification()
        principal = await self._inner.verify(token)
        if self._usable(principal):
            self._entries[key] = principal
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return principal

    def __len__(self) -> int:
        return len(self._entries)

    def _usable(self, principal: Principal) -> bool:
        return principal.expires_at is not None and self._clock() < principal.expires_at
