"""Hands out tokens per backend: memory first, then the store, then one token request.

The renewal policy lives here; the HTTP call lives in the client and persistence in the store.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .client import TokenClient
from .clock import Clock
from .clock import SystemClock
from .credentials import ClientCredentials
from .credentials import TokenGrant
from .store import DiskTokenStore
from .store import TokenStore
from .tokens import Token
from .tokens import TokenError
from .tokens import TokenResponse

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_MARGIN = 30.0

# Strong references to connection-closing tasks, which the event loop itself only holds weakly.
_closing: set[asyncio.Task[None]] = set()


class TokenEndpoint(Protocol):
    """The one thing the broker needs from a client: a token request."""

    async def request_token(self, credentials: ClientCredentials) -> TokenResponse: ...

    async def aclose(self) -> None: ...


def token_lifetime(expires_in: float | None, max_token_age: float) -> float:
    """How long a token may be used: the server's `expires_in`, never past our own cap."""
    if expires_in is None or expires_in <= 0:
        return max_token_age
    return min(expires_in, max_token_age)


def safety_margin(lifetime: float, refresh_margin: float = DEFAULT_REFRESH_MARGIN) -> float:
    """Renew this long before expiry: at most half the lifetime, so short tokens get reused."""
    return min(refresh_margin, lifetime / 2)


@dataclass(frozen=True)
class _Held:
    """A token in memory, with its deadlines on the monotonic clock."""

    token: Token
    renew_at: float
    expires_at: float


class TokenBroker:
    """Single-flight token acquisition with a memory layer over a persistent store."""

    def __init__(
        self,
        endpoint: TokenEndpoint,
        store: TokenStore,
        clock: Clock | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        self._endpoint = endpoint
        self._store = store
        self._clock = clock or SystemClock()
        self._refresh_margin = refresh_margin
        self._keys: dict[TokenGrant, str] = {}
        self._held: dict[str, _Held] = {}
        self._inflight: dict[str, asyncio.Task[_Held]] = {}

    @classmethod
    def on_disk(cls, cache_dir: Path) -> TokenBroker:
        """The production set-up: httpx token client, diskcache store, system clock."""
        return cls(TokenClient(), DiskTokenStore(cache_dir))

    async def token(self, grant: TokenGrant) -> Token:
        """A usable token for `grant`; concurrent callers for one grant share one acquisition."""
        key = self._key(grant)
        held = self._held.get(key)
        if held is not None and self._clock.monotonic() < held.renew_at:
            return held.token
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._acquire(grant, key))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # A caller that goes away (client disconnect) must not cancel the others' acquisition.
        return (await asyncio.shield(task)).token

    def close(self) -> None:
        """Cancels acquisitions still running and releases connections (shutdown, new cache)."""
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        self._store.close()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, so no connection was ever opened
        closing = loop.create_task(self._endpoint.aclose())
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)

    def _key(self, grant: TokenGrant) -> str:
        key = self._keys.get(grant)
        if key is None:
            key = self._keys[grant] = self._store.cache_key(grant)
        return key

    def _settle(self, key: str, task: asyncio.Task[_Held]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaited is not reported twice

    async def _acquire(self, grant: TokenGrant, key: str) -> _Held:
        stored = await self._store.load(key)
        current = self._held.get(key)
        # A held token keeps its deadlines: placing it anew by the wall clock could stretch them.
        if stored is not None and (current is None or stored != current.token):
            held = self._hold(stored)
            if self._clock.monotonic() < held.expires_at:
                # Renewed elsewhere (another process, an earlier run): use it, or fall back on it.
                self._held[key] = held
            if self._clock.monotonic() < held.renew_at:
                return held
        try:
            held = await self._fetch(grant, key)
        except TokenError as e:
            previous = self._held.get(key)
            if previous is not None and self._clock.monotonic() < previous.expires_at:
                # Renewal failed but the old token is still valid: serve it, never past expiry.
                logger.warning(
                    "backend %s: token renewal failed, using the current token until it expires"
                    " (%s)",
                    grant.backend,
                    _describe(e),
                )
                return previous
            logger.warning("backend %s: no token: %s", grant.backend, _describe(e))
            raise
        self._held[key] = held
        return held

    async def _fetch(self, grant: TokenGrant, key: str) -> _Held:
        sent_wall = self._clock.wall()
        sent_mono = self._clock.monotonic()
        response = await self._endpoint.request_token(grant.credentials)
        lifetime = token_lifetime(response.expires_in, grant.max_token_age)
        token = Token(
            access_token=response.access_token,
            token_type=response.token_type,
            issued_at=sent_wall,
            lifetime=lifetime,
            scope=response.scope,
        )
        took = self._clock.monotonic() - sent_mono
        logger.info(
            "backend %s: fetched token (lifetime %.0f s, took %.2f s)",
            grant.backend,
            lifetime,
            took,
        )
        await self._store.save(key, token, ttl=lifetime)
        margin = safety_margin(lifetime, self._refresh_margin)
        return _Held(token, renew_at=sent_mono + lifetime - margin, expires_at=sent_mono + lifetime)

    def _hold(self, token: Token) -> _Held:
        """Places a persisted token on this process's monotonic clock.

        Its time left is never more than its lifetime, so a wall clock set back cannot stretch it.
        """
        now = self._clock.monotonic()
        left = min(token.lifetime, token.expires_at - self._clock.wall())
        margin = safety_margin(token.lifetime, self._refresh_margin)
        return _Held(token, renew_at=now + left - margin, expires_at=now + left)


def _describe(error: TokenError) -> str:
    if error.description:
        return f"{error.cause}: {error.description}"
    return error.cause
