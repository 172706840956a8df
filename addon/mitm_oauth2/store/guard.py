"""A store that cannot fail a request: every call bounded, this process's memory while the
real store is out, and back to sharing once it answers again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from typing import TypeVar

from ..model.background import in_background
from ..model.clock import Clock
from ..model.clock import SystemClock
from ..model.credentials import TokenGrant
from ..model.errors import TokenError
from ..model.net import printable
from ..model.token import Token
from .base import TokenStore
from .memory import MemoryTokenStore

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_TIMEOUT = 0.5
# No request waits for the opening at start-up (each waits at most `timeout` for it), so it
# may take longer: a loop busy starting mitmproxy must not make it look like an outage.
OPEN_TIMEOUT = 5.0
# How long a failed store is left alone before a call tries it again; calls in between use memory.
DEFAULT_RETRY_INTERVAL = 2.0


class GuardedStore:
    """Wraps a raw store (opened lazily, off the event loop) with a timeout on every call.

    While it fails, tokens and locks live in this process (one warning when that starts, one
    line when sharing resumes). The broker's memory layer answers requests with a valid token
    before any store call, so only acquisitions ever wait here, and at most `timeout`.
    """

    def __init__(
        self,
        opener: Callable[[], Awaitable[TokenStore]],
        where: str,
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        clock: Clock | None = None,
    ) -> None:
        self.where = where
        self._opener = opener
        self._opening: asyncio.Task[TokenStore] | None = None
        self._current: TokenStore | None = None  # the last store opened, until replaced
        self._stale = False  # failed since opened: open again before the next use
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock or SystemClock()
        self._memory = MemoryTokenStore(self._clock)
        self._failing = False
        self._retry_at = 0.0
        # Locks this process took in the store whose release did not reach it: released once
        # the store answers, so that the other processes need not wait out the lease (a
        # failover can keep a lock that was replicated before the primary died).
        self._unreleased: dict[TokenGrant, str] = {}
        # Refresh tokens rotated while the store failed: only this process has them (the one
        # the store holds is spent), so they are written there first once it answers.
        self._unsaved: dict[TokenGrant, str] = {}
        self._releasing: asyncio.Task[None] | None = None

    def open_soon(self) -> None:
        """Starts opening the store now, when a loop runs, so a broken one is reported at
        start-up rather than at the first request that needs a token."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        in_background(self._call("open", _opened, OPEN_TIMEOUT))

    @property
    def failing(self) -> bool:
        """True while tokens are kept in this process instead of the store."""
        return self._failing

    async def load(self, grant: TokenGrant) -> Token | None:
        return await self._call("read", lambda store: store.load(grant))

    async def save(self, grant: TokenGrant, token: Token, ttl: float) -> None:
        # Kept in memory too: if the store fails before it is read back, this process has it.
        await self._memory.save(grant, token, ttl)
        await self._call("write", lambda store: store.save(grant, token, ttl))

    async def delete_if(self, grant: TokenGrant, access_token: str) -> None:
        await self._memory.delete_if(grant, access_token)
        await self._call("delete", lambda store: store.delete_if(grant, access_token))

    async def delete(self, grant: TokenGrant) -> None:
        await self._memory.delete(grant)
        await self._call("delete", lambda store: store.delete(grant))

    async def load_refresh(self, grant: TokenGrant) -> str | None:
        unsaved = self._unsaved.get(grant)
        if unsaved is not None:
            return unsaved  # newer than the store's, which the server has spent

        async def read(store: TokenStore) -> str | None:
            if store is self._memory:
                # Not what this process last saw: another may have rotated it since, and a
                # spent refresh token presented again can revoke the user's grant.
                raise TokenError(
                    f"{self.where} does not answer, and a user's refresh token is only used "
                    "as the store has it"
                )
            return await store.load_refresh(grant)

        return await self._call("read", read)

    async def save_refresh(self, grant: TokenGrant, refresh_token: str) -> None:
        async def save(store: TokenStore) -> bool:
            await store.save_refresh(grant, refresh_token)
            return store is not self._memory

        self._unsaved.pop(grant, None)
        if not await self._call("write", save):
            logger.error(
                "backend %s: the refresh token the server rotated to is kept in this process "
                "only, as %s fails; it is written there once it answers (a proxy renewing "
                "before then presents the spent one, which the server may answer by revoking "
                "the grant)",
                grant.backend,
                self.where,
            )
            self._unsaved[grant] = refresh_token
            self._catch_up_soon()

    async def delete_refresh(self, grant: TokenGrant) -> None:
        self._unsaved.pop(grant, None)
        await self._call("delete", lambda store: store.delete_refresh(grant))

    async def try_lock(self, grant: TokenGrant, owner: str, lease: float) -> bool:
        return await self._call("lock", lambda store: store.try_lock(grant, owner, lease))

    async def unlock(self, grant: TokenGrant, owner: str) -> None:
        await self._memory.unlock(grant, owner)

        async def release(store: TokenStore) -> bool:
            await store.unlock(grant, owner)
            return store is not self._memory

        if not await self._call("unlock", release):
            # Released again in the store later: only its owner's release removes a lock, so
            # one taken in memory meanwhile costs nothing there.
            self._unreleased[grant] = owner
            self._catch_up_soon()

    def _catch_up_soon(self) -> None:
        if self._releasing is None or self._releasing.done():
            self._releasing = in_background(self._catch_up_when_back())

    async def _catch_up_when_back(self) -> None:
        while self._unreleased or self._unsaved:
            await asyncio.sleep(max(0.0, self._retry_at - self._clock.monotonic()))
            await self._call("write", self._catch_up)

    async def _call(
        self,
        what: str,
        operation: Callable[[TokenStore], Awaitable[T]],
        wait_at_least: float = 0.0,
    ) -> T:
        """`operation` on the store, or on this process's memory while the store fails.

        Writes reach memory first (see save), so repeating them there is harmless.
        """
        if self._failing and self._clock.monotonic() < self._retry_at:
            return await operation(self._memory)
        try:
            async with asyncio.timeout(max(wait_at_least, self._timeout)):
                store = await asyncio.shield(self._open())
                result = await operation(store)
        except Exception as e:  # whatever the store raises, the request goes on without it
            if not (isinstance(e, TimeoutError) and what != "open" and self._first_opening()):
                self._fail(what, e)
            return await operation(self._memory)
        if self._failing:
            self._failing = False
            logger.warning("%s is back: tokens are shared again", self.where)
            try:
                await self._catch_up(store)
            except Exception as e:  # failing again: caught up when it answers
                self._fail(what, e)
        return result

    def _first_opening(self) -> bool:
        """Whether the store is still being opened for the first time: a call that stops
        waiting for it then is no sign of failure (a loaded machine, a TLS handshake), and
        the opening's own wait (OPEN_TIMEOUT, see open_soon) tells whether the store fails."""
        opening = self._opening
        return (
            not self._failing
            and self._current is None
            and opening is not None
            and not opening.done()
        )

    async def _catch_up(self, store: TokenStore) -> None:
        """Writes the refresh tokens rotated while the store failed, then releases the locks
        whose release did not reach it (so that no proxy renews with a spent refresh token).
        Raises when the store fails again: what is left is done when it answers."""
        if store is self._memory:  # still failing: kept for when it answers
            return
        async with asyncio.timeout(self._timeout):
            saved = 0
            for grant, refresh_token in list(self._unsaved.items()):
                await store.save_refresh(grant, refresh_token)
                saved += 1
                if self._unsaved.get(grant) == refresh_token:
                    del self._unsaved[grant]
            if saved:
                logger.warning(
                    "%s: the refresh tokens rotated while it failed are saved", self.where
                )
            for grant, owner in list(self._unreleased.items()):
                await store.unlock(grant, owner)
                if self._unreleased.get(grant) == owner:
                    del self._unreleased[grant]

    def _open(self) -> asyncio.Task[TokenStore]:
        """The store, opened once, and opened again after it failed: a reconnect, which also
        lets a Redis that lost its data learn the fleet's cache-key key again."""
        opening = self._opening
        if opening is None or (self._stale and opening.done()):
            self._stale = False
            opening = self._opening = asyncio.ensure_future(self._reopen())
        return opening

    async def _reopen(self) -> TokenStore:
        store = await self._opener()
        old, self._current = self._current, store
        if old is not None and old is not store:
            with contextlib.suppress(Exception):  # a broken store may fail to close as well
                await old.aclose()
        return store

    def _fail(self, what: str, error: Exception) -> None:
        self._retry_at = self._clock.monotonic() + self._retry_interval
        self._stale = True
        if self._failing:
            return
        self._failing = True
        detail = type(error).__name__
        if str(error):
            detail += f": {printable(str(error), 160)}"
        logger.warning(
            "%s: cannot %s (%s); keeping tokens in this process until it answers again "
            "(tried every %.0f s)",
            self.where,
            what,
            detail,
            self._retry_interval,
        )

    async def aclose(self) -> None:
        if self._releasing is not None:
            self._releasing.cancel()
        await self._memory.aclose()
        if self._opening is not None and not self._opening.done():
            self._opening.add_done_callback(_close_when_opened)
        elif self._current is not None:
            await self._current.aclose()


async def _opened(store: TokenStore) -> None:
    """Nothing more to do once the store is open."""


def _close_when_opened(opening: asyncio.Task[TokenStore]) -> None:
    """A store whose opening outlived the guard is closed as soon as it exists."""
    if opening.cancelled() or opening.exception() is not None:
        return
    in_background(opening.result().aclose())
