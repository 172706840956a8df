"""Stand-ins for the broker tests: a clock the test drives, a token endpoint that issues tok-1,
tok-2, ... (or hangs, or fails), and a token store in memory. The fixtures are in conftest.py."""

from __future__ import annotations

import asyncio

from mitm_oauth2.broker import TokenBroker
from mitm_oauth2.credentials import ClientCredentials
from mitm_oauth2.store import derive_cache_key
from mitm_oauth2.tokens import Token
from mitm_oauth2.tokens import TokenError
from mitm_oauth2.tokens import TokenResponse

START = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now_wall = START
        self.now_mono = 500.0

    def wall(self) -> float:
        return self.now_wall

    def monotonic(self) -> float:
        return self.now_mono

    def advance(self, seconds: float) -> None:
        self.now_wall += seconds
        self.now_mono += seconds

    def since_start(self, seconds: float) -> None:
        self.now_wall, self.now_mono = START + seconds, 500.0 + seconds


class FakeEndpoint:
    """Issues tok-1, tok-2, ...; can be held on `gate` or made to fail."""

    def __init__(self, expires_in: float | None = 3600) -> None:
        self.expires_in = expires_in
        self.calls = 0
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.failure: TokenError | None = None
        self.closed = False

    async def request_token(self, credentials: ClientCredentials) -> TokenResponse:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return TokenResponse(f"tok-{self.calls}", "Bearer", self.expires_in, None)

    async def aclose(self) -> None:
        self.closed = True


class MemoryStore:
    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.ttls: dict[str, float] = {}

    def cache_key(self, grant) -> str:
        return derive_cache_key(b"k" * 32, grant)

    async def load(self, key: str) -> Token | None:
        return self.tokens.get(key)

    async def save(self, key: str, token: Token, ttl: float) -> None:
        self.tokens[key] = token
        self.ttls[key] = ttl

    async def try_lock(self, key: str, owner: str, lease: float) -> bool:
        return True

    async def unlock(self, key: str, owner: str) -> None:
        pass

    async def delete(self, key: str) -> None:
        self.tokens.pop(key, None)

    async def delete_if(self, key: str, access_token: str) -> None:
        if key in self.tokens and self.tokens[key].access_token == access_token:
            del self.tokens[key]

    def close(self) -> None:
        pass


async def settle(broker: TokenBroker) -> None:
    """Lets background renewals finish (they run on the loop; the test drives the clock)."""
    await asyncio.gather(*list(broker._inflight.values()), return_exceptions=True)
