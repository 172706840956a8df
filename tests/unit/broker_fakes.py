"""Stand-ins for the broker tests: a clock the test drives, a token endpoint that issues tok-1,
tok-2, ... (or hangs, or fails), and a token store in memory. The fixtures are in conftest.py.
For the store tests too: a grant with other credentials, its cache key, and the lock's contract
every store keeps (the Redis store's integration test checks it as well)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from typing import Any

from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import SubjectToken
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.model.token import Token
from mitm_oauth2.model.token import TokenResponse
from mitm_oauth2.store.base import TokenStore
from mitm_oauth2.store.base import derive_cache_key
from mitm_oauth2.tokens.broker import Issued
from mitm_oauth2.tokens.broker import TokenBroker

START = 1_700_000_000.0
HMAC_KEY = b"k" * 32


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
    """Issues tok-1, tok-2, ...; can be held on `gate` or made to fail. `asked_with`: the
    refresh token of each request (None: the grant itself)."""

    def __init__(self, expires_in: float | None = 3600) -> None:
        self.expires_in = expires_in
        self.calls = 0
        self.asked_with: list[str | None] = []
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.failure: TokenError | None = None
        self.closed = False

    async def request_token(
        self,
        credentials: ClientCredentials,
        subject: SubjectToken | None = None,
        refresh_token: str | None = None,
    ) -> TokenResponse:
        self.calls += 1
        self.asked_with.append(refresh_token)
        call = self.calls
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return TokenResponse(f"tok-{call}", "Bearer", self.expires_in, None)

    async def aclose(self) -> None:
        self.closed = True


class MemoryStore:
    """Tokens by grant, with the TTL each was saved with; the lock always granted."""

    where = "test memory"

    def __init__(self) -> None:
        self.tokens: dict[TokenGrant, Token] = {}
        self.ttls: dict[TokenGrant, float] = {}
        self.refresh_tokens: dict[TokenGrant, str] = {}

    async def load(self, grant: TokenGrant) -> Token | None:
        return self.tokens.get(grant)

    async def save(self, grant: TokenGrant, token: Token, ttl: float) -> None:
        self.tokens[grant] = token
        self.ttls[grant] = ttl

    async def try_lock(self, grant: TokenGrant, owner: str, lease: float) -> bool:
        return True

    async def unlock(self, grant: TokenGrant, owner: str) -> None:
        pass

    async def delete(self, grant: TokenGrant) -> None:
        self.tokens.pop(grant, None)

    async def delete_if(self, grant: TokenGrant, access_token: str) -> None:
        if grant in self.tokens and self.tokens[grant].access_token == access_token:
            del self.tokens[grant]

    async def load_refresh(self, grant: TokenGrant) -> str | None:
        return self.refresh_tokens.get(grant)

    async def save_refresh(self, grant: TokenGrant, refresh_token: str) -> None:
        self.refresh_tokens[grant] = refresh_token

    async def delete_refresh(self, grant: TokenGrant) -> None:
        self.refresh_tokens.pop(grant, None)

    async def aclose(self) -> None:
        pass


def with_credentials(grant: TokenGrant, **changes: Any) -> TokenGrant:
    """`grant` with `changes` to its ClientCredentials fields."""
    credentials = dataclasses.replace(grant.credentials, **changes)
    return dataclasses.replace(grant, credentials=credentials)


def key_for(grant: TokenGrant) -> str:
    """The cache key of `grant` under HMAC_KEY."""
    return derive_cache_key(HMAC_KEY, grant)


async def check_the_lock(
    store: TokenStore, other: TokenStore, grant: TokenGrant, lease: float
) -> None:
    """The lock's contract, `other` standing for another process on the same storage: one owner
    at a time, released only by its owner. `other` holds the lock at the end."""
    assert await store.try_lock(grant, "me", lease=lease)
    assert not await other.try_lock(grant, "you", lease=lease)
    await other.unlock(grant, "you")  # not the owner: no effect
    assert not await other.try_lock(grant, "you", lease=lease)
    await store.unlock(grant, "me")
    assert await other.try_lock(grant, "you", lease=lease)


async def settle(broker: TokenBroker) -> None:
    """Lets background renewals finish (they run on the loop; the test drives the clock)."""
    await asyncio.gather(*list(broker._inflight.values()), return_exceptions=True)


async def run_hook(result: Awaitable[None] | None) -> None:
    """Awaits what a hook returned, as mitmproxy does: a coroutine only when it must wait."""
    if result is not None:
        await result


class BrokerStub:
    """Stands in for TokenBroker in the addon's tests: a subclass says which token `token`
    gives; nothing is held in memory, so every request goes through `issue`."""

    async def token(self, grant: TokenGrant) -> Token:
        raise NotImplementedError

    def issue_held(self, grant: TokenGrant) -> None:
        return None

    def valid_token(self, grant: TokenGrant) -> Token | None:
        return None

    async def issue(self, grant: TokenGrant) -> Issued:
        token = await self.token(grant)
        return Issued(token, "cache", renewing=False, age=0.0, left=token.lifetime)

    def look_after(self, grants: tuple[TokenGrant, ...]) -> None:
        pass

    def close(self) -> None:
        pass
