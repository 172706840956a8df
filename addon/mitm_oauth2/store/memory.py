"""Tokens in this process only: where the guard keeps them while the real store fails."""

from __future__ import annotations

from ..model.clock import Clock
from ..model.clock import SystemClock
from ..model.credentials import TokenGrant
from ..model.token import Token

# The guard keeps a copy of every token it saves: bounded, as token exchange makes a grant per
# caller, and a flood of callers must not grow the process (the oldest copy goes first).
MAX_TOKENS = 1024


class MemoryTokenStore:
    """A dict with expiry, at most `limit` tokens. The lock is per process, which is all it can
    be while the shared store is out: the broker's single flight already makes one request per
    process."""

    where = "this process's memory"

    def __init__(self, clock: Clock | None = None, limit: int = MAX_TOKENS) -> None:
        self._clock = clock or SystemClock()
        self._limit = limit
        # Two dicts rather than one of (token, expiry) tuples: no object per token for the
        # garbage collector to walk in each full collection.
        self._tokens: dict[TokenGrant, Token] = {}
        self._until: dict[TokenGrant, float] = {}
        self._locks: dict[TokenGrant, tuple[str, float]] = {}

    async def load(self, grant: TokenGrant) -> Token | None:
        token = self._tokens.get(grant)
        if token is None:
            return None
        if self._clock.monotonic() >= self._until[grant]:
            self._drop(grant)
            return None
        return token

    async def save(self, grant: TokenGrant, token: Token, ttl: float) -> None:
        self._drop(grant)  # saved again: the newest, so the last to go
        self._tokens[grant] = token
        self._until[grant] = self._clock.monotonic() + ttl
        while len(self._tokens) > self._limit:
            self._drop(next(iter(self._tokens)))

    async def delete_if(self, grant: TokenGrant, access_token: str) -> None:
        token = self._tokens.get(grant)
        if token is not None and token.access_token == access_token:
            self._drop(grant)

    async def delete(self, grant: TokenGrant) -> None:
        self._drop(grant)

    def _drop(self, grant: TokenGrant) -> None:
        self._tokens.pop(grant, None)
        self._until.pop(grant, None)

    # A user's refresh token is never kept here: one this process holds may have been rotated
    # by another since, and presenting it again can revoke the grant (see GuardedStore).
    async def load_refresh(self, grant: TokenGrant) -> str | None:
        return None

    async def save_refresh(self, grant: TokenGrant, refresh_token: str) -> None:
        return None

    async def delete_refresh(self, grant: TokenGrant) -> None:
        return None

    async def try_lock(self, grant: TokenGrant, owner: str, lease: float) -> bool:
        now = self._clock.monotonic()
        held = self._locks.get(grant)
        if held is not None and held[0] != owner and now < held[1]:
            return False
        self._locks[grant] = (owner, now + lease)
        return True

    async def unlock(self, grant: TokenGrant, owner: str) -> None:
        held = self._locks.get(grant)
        if held is not None and held[0] == owner:
            del self._locks[grant]

    async def aclose(self) -> None:
        self._tokens.clear()
        self._until.clear()
        self._locks.clear()
