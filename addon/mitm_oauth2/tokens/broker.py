"""Hands out tokens per backend: memory first, then the store, then one token request.

The renewal policy is applied here (rules in `policy`); the HTTP call lives in the client and
persistence in the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import uuid
from dataclasses import dataclass
from dataclasses import field
from typing import NamedTuple
from typing import Protocol

from ..model.background import in_background
from ..model.claims import shown
from ..model.clock import Clock
from ..model.clock import SystemClock
from ..model.credentials import ClientCredentials
from ..model.credentials import GrantType
from ..model.credentials import SubjectToken
from ..model.credentials import TokenGrant
from ..model.errors import SignInRequired
from ..model.errors import TokenError
from ..model.token import Token
from ..model.token import TokenResponse
from ..model.token import fingerprint
from ..store.base import TokenStore
from .policy import Backoff
from .policy import FailureMemory
from .policy import capped_by_subject
from .policy import expiry_skew
from .policy import refuse_expired
from .policy import safety_margin
from .policy import subject_left
from .policy import token_lifetime
from .status import BackendStatus
from .status import Counters
from .status import TokenPlace

logger = logging.getLogger(__name__)

# Longer than a token request may take (the client's timeout), so a live holder keeps its lock;
# a holder that died (SIGKILL) delays the other processes by at most this.
DEFAULT_LOCK_LEASE = 15.0

# A user's token request ends this long before the lock's lease would, leaving time to save.
LEASE_MARGIN = 1.0

# How often the store is read for backends without a token here, so that `status` can tell a
# token another process put there; a read of the disk cache or Redis, not a token request.
STORE_LOOK_INTERVAL = 5.0


class Issued(NamedTuple):
    """A token handed out, and its story for the flow that gets it (JSON-safe except `token`).
    A named tuple: one is made for every request, and a tuple is the cheapest to make."""

    token: Token
    source: str  # "cache": already here; "fetched": this request waited for a token request
    renewing: bool  # a renewal runs in the background
    age: float  # seconds since the token was requested
    left: float  # seconds until it expires


class TokenEndpoint(Protocol):
    """The one thing the broker needs from a client: a token request."""

    async def request_token(
        self,
        credentials: ClientCredentials,
        subject: SubjectToken | None = None,
        refresh_token: str | None = None,
    ) -> TokenResponse: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class _Held:
    """A token in memory, with its deadlines on the monotonic clock."""

    token: Token
    renew_at: float
    expires_at: float
    fetched: bool = False  # by a token request of this process, rather than from the store
    # Served until shortly before it expires, so it does not expire on its way; computed once,
    # as every request compares the clock with it (and tells the token's age).
    usable_until: float = field(init=False, repr=False)
    issued_at: float = field(init=False, repr=False)  # on the monotonic clock

    def __post_init__(self) -> None:
        skew = expiry_skew(self.token.lifetime)
        object.__setattr__(self, "usable_until", self.expires_at - skew)
        object.__setattr__(self, "issued_at", self.expires_at - self.token.lifetime)


class TokenBroker:
    """Single-flight token acquisition with a memory layer over a persistent store.

    A valid token is always served at once. When it enters its last `margin` seconds, the
    request that notices starts one background renewal and still gets the current token.
    After a failed request, callers share that failure until the backoff ends.
    """

    def __init__(
        self,
        endpoint: TokenEndpoint,
        store: TokenStore,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        lock_lease: float = DEFAULT_LOCK_LEASE,
        lock_poll: float = 0.05,
    ) -> None:
        self._endpoint = endpoint
        self._store = store
        self._clock = clock or SystemClock()
        rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._failures = FailureMemory(self._clock, backoff or Backoff(), rng)
        self._held: dict[TokenGrant, _Held] = {}
        self._inflight: dict[TokenGrant, asyncio.Task[_Held]] = {}
        self.counters = Counters()
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex}"
        self._lock_lease = lock_lease
        self._lock_poll = lock_poll
        # What this process last read from (or wrote to) the store, per grant (None: nothing).
        self._stored: dict[TokenGrant, Token | None] = {}
        self._looked_after: tuple[TokenGrant, ...] = ()
        self._looking: asyncio.Task[None] | None = None
        # Bumped by each purge of the grant: an acquisition started before it keeps nothing.
        self._purges: dict[TokenGrant, int] = {}
        # Grants forgotten (see `forget`) while an acquisition ran: dropped once it ends.
        self._forgotten: set[TokenGrant] = set()
        # The fingerprint of the token a backend last rejected, per grant: never taken back.
        self._rejected: dict[TokenGrant, str] = {}

    async def token(self, grant: TokenGrant) -> Token:
        """A valid token for `grant`; raises TokenError when none can be had."""
        return (await self.issue(grant)).token

    async def issue(self, grant: TokenGrant) -> Issued:
        """A valid token for `grant` with how it was had; raises TokenError when none can be."""
        issued = self.issue_held(grant)
        if issued is not None:
            return issued
        self._failures.raise_if_recent(grant)
        # A caller that goes away (client disconnect) must not cancel the others' acquisition.
        held = await asyncio.shield(self._acquisition(grant, stale_ok=True))
        source = "fetched" if held.fetched else "cache"
        return self._hand_out(grant, held, source, self._clock.monotonic())

    def issue_held(self, grant: TokenGrant) -> Issued | None:
        """The valid token in memory, at once (no await), or None: then `issue` gets one.
        Needs the running loop when the token is due for renewal (it starts in the background).
        """
        held = self._held.get(grant)
        now = self._clock.monotonic()
        if held is None or now >= held.usable_until:
            return None
        return self._hand_out(grant, held, "cache", now)

    def _hand_out(self, grant: TokenGrant, held: _Held, source: str, now: float) -> Issued:
        # Every request runs this: no lookup that can be skipped (most have no renewal running).
        if now >= held.renew_at:
            self._renew_in_background(grant)
        if source == "cache":
            self.counters.of(grant.backend).cache_hits += 1
        renewing = bool(self._inflight) and grant in self._inflight
        age = max(0.0, now - held.issued_at)
        return Issued(held.token, source, renewing, age, held.usable_until - now)

    def valid_token(self, grant: TokenGrant) -> Token | None:
        """The valid token in memory, if any; unlike `issue_held`, neither counted nor renewed."""
        held = self._valid(grant)
        return None if held is None else held.token

    async def invalidate(self, grant: TokenGrant, access_token: str) -> None:
        """Forgets `access_token` if it is still the current one (a backend rejected it).

        Compare-and-delete, in memory and in the store: a token renewed meanwhile, here or by
        another process, is kept.
        """
        held = self._held.get(grant)
        if held is not None and held.token.access_token == access_token:
            del self._held[grant]
        # A read of the store made before the deletion (a renewal polling another process's
        # lock) would bring it back, and the replay would send it again.
        self._rejected[grant] = fingerprint(access_token)
        await self._store.delete_if(grant, access_token)
        stored = self._stored.get(grant)
        if stored is not None and stored.access_token == access_token:
            self._stored[grant] = None

    def status(self, grant: TokenGrant, *, store_ok: bool) -> BackendStatus:
        """The backend's token, counters and store (for `oauth.status` and the metrics);
        `store_ok` is the guard's word on the store, which the wiring holds.

        The store is known from this process's last read of it (see `look_after`), so that this
        stays a synchronous answer, as commands must be.
        """
        now = self._clock.monotonic()
        held, place = self._valid(grant), TokenPlace.MEMORY
        stored = self._stored.get(grant)
        if held is None and stored is not None:
            placed = self._place(stored, grant)  # as the next request would take it
            if now < placed.usable_until:
                held, place = placed, TokenPlace.STORE
        age = left = claims = None
        if held is not None:
            age = round(now - held.issued_at, 1)
            left = round(held.usable_until - now, 1)
            claims = shown(held.token.claims)
        return BackendStatus(
            token=place if held is not None else TokenPlace.NONE,
            renewing=grant in self._inflight,
            token_age_s=age,
            token_left_s=left,
            store=self._store.where,
            store_ok=store_ok,
            counters=self.counters.of(grant.backend),
            claims=claims,
            sign_in_required=self._failures.sign_in_required(grant),
        )

    def look_after(self, grants: tuple[TokenGrant, ...]) -> None:
        """Reads the store now and every STORE_LOOK_INTERVAL for those of `grants` that have no
        valid token here, so that `status` knows a token another process stored. Needs a
        running loop (does nothing without one); replaces the grants looked after before."""
        looking = self._looking is not None and not self._looking.done()
        if looking and grants == self._looked_after:
            return
        self._looked_after = grants
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._looking is not None:
            self._looking.cancel()
        self._looking = loop.create_task(self._look_every(STORE_LOOK_INTERVAL))

    async def look(self, grant: TokenGrant) -> None:
        """Reads the grant's entry in the store (what `status` reports when memory has none)."""
        self._stored[grant] = self._not_rejected(grant, await self._store.load(grant))

    async def _look_every(self, interval: float) -> None:
        while True:
            for grant in self._looked_after:
                if self._valid(grant) is None and grant not in self._inflight:
                    await self.look(grant)
            await asyncio.sleep(interval)

    def refresh(self, grant: TokenGrant) -> None:
        """Starts a renewal now, even for a fresh token or while backing off after failures."""
        self._failures.forget(grant)
        self._acquisition(grant, stale_ok=False)

    async def purge(self, grant: TokenGrant) -> None:
        """Forgets the backend's token here and in the store; the next request fetches one.

        A token request already under way still answers the requests waiting for it, but its
        token is neither kept nor stored: later requests make a request of their own (once that
        one has released the store's lock).
        """
        self._purges[grant] = self._purges.get(grant, 0) + 1
        self._inflight.pop(grant, None)
        self._held.pop(grant, None)
        self._failures.forget(grant)
        await self._store.delete(grant)
        self._stored[grant] = None

    def forget(self, grant: TokenGrant) -> None:
        """Drops what this process holds for `grant` (a caller's grant evicted from
        tokens.subjects); the store keeps its token for whoever asks next. An acquisition
        running for it ends as usual, and then its state is dropped too."""
        if grant in self._inflight:
            self._forgotten.add(grant)
            return
        self._drop(grant)

    def _drop(self, grant: TokenGrant) -> None:
        self._held.pop(grant, None)
        self._stored.pop(grant, None)
        self._purges.pop(grant, None)
        self._rejected.pop(grant, None)
        self._failures.forget(grant)

    def close(self) -> None:
        """Cancels acquisitions still running and releases connections (shutdown, new cache)."""
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        if self._looking is not None:
            self._looking.cancel()
            self._looking = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, so no connection or store was ever opened
        in_background(self._endpoint.aclose())
        in_background(self._store.aclose())

    def _valid(self, grant: TokenGrant) -> _Held | None:
        held = self._held.get(grant)
        if held is not None and self._clock.monotonic() < held.usable_until:
            return held
        return None

    def _renew_in_background(self, grant: TokenGrant) -> None:
        if self._failures.backing_off(grant):
            return  # the current token stays in use until it expires
        self._acquisition(grant, stale_ok=False)

    def _acquisition(self, grant: TokenGrant, *, stale_ok: bool) -> asyncio.Task[_Held]:
        """The one acquisition in flight for `grant`, started if there is none."""
        task = self._inflight.get(grant)
        if task is None or task.done():
            task = asyncio.ensure_future(self._acquire(grant, stale_ok=stale_ok))
            self._inflight[grant] = task
            task.add_done_callback(lambda done: self._settle(grant, done))
        return task

    def _settle(self, grant: TokenGrant, task: asyncio.Task[_Held]) -> None:
        if self._inflight.get(grant) is task:
            del self._inflight[grant]
            if grant in self._forgotten:
                self._forgotten.discard(grant)
                self._drop(grant)
        if not task.cancelled():
            task.exception()  # retrieved: a background failure was logged, not lost

    async def _acquire(self, grant: TokenGrant, *, stale_ok: bool) -> _Held:
        """A token from the store when it is newer than ours, else one new token request.

        `stale_ok`: a valid token that is due for renewal is good enough (a caller is waiting;
        the renewal then runs in the background). The store's lease lock makes the token
        request one per credential across every process sharing the store; the others wait for
        its result, or take over once a dead holder's lease runs out.
        """
        purges = self._purges.get(grant, 0)
        adopted = await self._adopt_stored(grant, stale_ok=stale_ok)
        if adopted is not None:
            return adopted
        while not await self._store.try_lock(grant, self._owner, self._lock_lease):
            await asyncio.sleep(self._lock_poll)
            adopted = await self._adopt_stored(grant, stale_ok=False)
            if adopted is not None:
                return adopted
        try:
            # The previous holder may have renewed it just before we got the lock.
            adopted = await self._adopt_stored(grant, stale_ok=False)
            if adopted is not None:
                return adopted
            try:
                held = await self._fetch(grant, purges)
            except TokenError as e:
                self._record_failure(grant, e, purges)
                raise
            except Exception as e:  # shared and backed off like any other failure
                error = TokenError(f"token request failed ({type(e).__name__})")
                self._record_failure(grant, error, purges)
                raise error from e
        finally:
            await self._store.unlock(grant, self._owner)
        if self._purges.get(grant, 0) == purges:
            self._failures.forget(grant)
            self._held[grant] = held
        return held

    async def _adopt_stored(self, grant: TokenGrant, *, stale_ok: bool) -> _Held | None:
        """Takes the stored token when it is another than ours and still valid (and not due,
        unless `stale_ok`)."""
        purges = self._purges.get(grant, 0)
        stored = self._not_rejected(grant, await self._store.load(grant))
        if self._purges.get(grant, 0) != purges:
            return None  # read before a purge deleted it
        dpop = grant.credentials.dpop
        if stored is not None and stored.dpop_key is None and dpop and dpop.generated:
            stored = None  # bound to a key made by another process, which it did not store
        self._stored[grant] = stored
        current = self._held.get(grant)
        # A held token keeps its deadlines: placing it anew by the wall clock could stretch them.
        if stored is None or (current is not None and stored == current.token):
            return None
        adopted = self._place(stored, grant)
        now = self._clock.monotonic()
        if now >= adopted.usable_until:
            return None
        self._held[grant] = adopted
        if not stale_ok and now >= adopted.renew_at:
            return None
        self._failures.forget(grant)
        return adopted

    def _not_rejected(self, grant: TokenGrant, stored: Token | None) -> Token | None:
        rejected = self._rejected.get(grant)
        if stored is not None and rejected is not None and stored.fingerprint == rejected:
            return None
        return stored

    async def _fetch(self, grant: TokenGrant, purges: int) -> _Held:
        sent_wall = self._clock.wall()
        sent_mono = self._clock.monotonic()
        subject = grant.subject
        caller_left = subject_left(subject, sent_wall)
        refuse_expired(caller_left)
        response = await self._ask(grant)
        lifetime, warning = token_lifetime(response.expires_in, grant.max_token_age)
        if warning:
            logger.warning("backend %s: %s", grant.backend, warning)
        lifetime, margin = capped_by_subject(
            lifetime, safety_margin(lifetime, grant.refresh_margin), caller_left
        )
        token = Token(
            access_token=response.access_token,
            token_type=response.token_type,
            issued_at=sent_wall,
            lifetime=lifetime,
            scope=response.scope,
            dpop_key=grant.credentials.dpop,  # the token client signed its proof with it
        )
        took = self._clock.monotonic() - sent_mono
        logger.info(
            "backend %s: fetched token (lifetime %.0f s, took %.2f s)",
            grant.backend,
            lifetime,
            took,
        )
        self.counters.of(grant.backend).fetches += 1
        if self._purges.get(grant, 0) == purges:  # else purged while it was asked for
            await self._store.save(grant, token, ttl=lifetime)
            if self._purges.get(grant, 0) != purges:  # purged while it was being saved
                await self._store.delete_if(grant, token.access_token)
            else:
                self._stored[grant] = token
        return _Held(
            token,
            renew_at=sent_mono + lifetime - margin,
            expires_at=sent_mono + lifetime,
            fetched=True,
        )

    async def _ask(self, grant: TokenGrant) -> TokenResponse:
        """The token request; for a user's grant, with the user's newest refresh token, and the
        one the server rotated to saved before anything else (under the store's lock: no other
        process renews meanwhile), so that a crash from then on costs no more than a renewal."""
        credentials = grant.credentials
        user = credentials.user
        if user is None:
            return await self._endpoint.request_token(credentials, grant.subject)
        # The configured one only while the store has none: once rotated, it is spent.
        refresh = await self._store.load_refresh(grant)
        if refresh is None and user.refresh_token is not None:
            refresh = user.refresh_token.reveal()
        # Ended while the lock is surely ours: past its lease another process may renew, and
        # with the same refresh token, which a server with reuse detection answers by revoking.
        deadline = max(LEASE_MARGIN, self._lock_lease - LEASE_MARGIN)
        try:
            async with asyncio.timeout(deadline):
                try:
                    response = await self._endpoint.request_token(credentials, None, refresh)
                except SignInRequired:
                    if refresh is None or credentials.grant is not GrantType.PASSWORD:
                        raise
                    # The password grant's own refresh token is refused: the password anew.
                    await self._store.delete_refresh(grant)
                    refresh = None
                    response = await self._endpoint.request_token(credentials)
        except TimeoutError:
            raise TokenError(
                f"token request took longer than the store's lock lasts ({deadline:g} s of "
                "oauth2_lock_lease): given up, so that no other process renews meanwhile"
            ) from None
        if response.refresh_token is not None and response.refresh_token != refresh:
            await self._store.save_refresh(grant, response.refresh_token)
        return response

    def _record_failure(self, grant: TokenGrant, error: TokenError, purges: int) -> None:
        if self._purges.get(grant, 0) != purges:  # the purge forgot it: no backoff for later
            return
        still = self._valid(grant)
        left = None if still is None else still.usable_until - self._clock.monotonic()
        self._failures.record(grant.backend, grant, error, left)
        self.counters.of(grant.backend).failed(error)

    def _place(self, token: Token, grant: TokenGrant) -> _Held:
        """Places a persisted token on this process's monotonic clock.

        Its time left is never more than its lifetime, so a wall clock set back cannot stretch it.
        A stored token without a DPoP key of its own is bound to the configured key file's,
        which every process has (only generated keys are stored, see `_adopt_stored`).
        """
        dpop = grant.credentials.dpop
        if token.dpop_key is None and dpop is not None and not dpop.generated:
            token = dataclasses.replace(token, dpop_key=dpop)
        now, wall = self._clock.monotonic(), self._clock.wall()
        left = min(token.lifetime, token.expires_at - wall)
        margin = safety_margin(token.lifetime, grant.refresh_margin)
        caller_left = subject_left(grant.subject, wall)
        if caller_left is not None and left >= caller_left:
            margin = 0.0  # it ends with the caller's token: a renewal would end no later
        return _Held(token, renew_at=now + left - margin, expires_at=now + left)
