"""The renewal rules: lifetimes, margins, which failures to retry and when, and the memory of
failed token requests that applies them."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Hashable
from dataclasses import dataclass

from ..model.clock import Clock
from ..model.credentials import DEFAULT_REFRESH_MARGIN
from ..model.credentials import SubjectToken
from ..model.errors import CallerTokenRefused
from ..model.errors import SignInRequired
from ..model.errors import TokenError

logger = logging.getLogger(__name__)

# Below this a server's expires_in is taken as a mistake: a token renewed every few hundred
# milliseconds would turn every request into a token request.
MIN_LIFETIME = 1.0
MAX_EXPIRY_SKEW = 10.0

# RFC 6749 §5.2: retrying these with the same request cannot succeed, only hammer the server.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "invalid_scope",
        "unauthorized_client",
        "unsupported_grant_type",
    }
)


def token_lifetime(expires_in: float | None, max_token_age: float) -> tuple[float, str | None]:
    """How long a token may be used, and a warning when the server's expires_in made no sense.

    The server's `expires_in`, never past our own `max_token_age`; missing means `max_token_age`.
    """
    if expires_in is None:
        return max_token_age, None
    if expires_in <= 0:
        return (
            max_token_age,
            f"expires_in {expires_in:g} is not positive; using {max_token_age:g} s",
        )
    if expires_in < MIN_LIFETIME:
        return MIN_LIFETIME, f"expires_in {expires_in:g} is too short; using {MIN_LIFETIME:g} s"
    return min(expires_in, max_token_age), None


def expiry_skew(lifetime: float) -> float:
    """A token is given up this long before it expires, so one sent in its last moment does not
    expire on its way to the backend: a tenth of its lifetime, at most 10 s (golang.org/x/oauth2
    uses 10 s for every token, which would leave nothing of a 5-second one)."""
    return min(MAX_EXPIRY_SKEW, lifetime / 10)


def safety_margin(lifetime: float, refresh_margin: float = DEFAULT_REFRESH_MARGIN) -> float:
    """Renewal starts this long before expiry: at most half the lifetime, so short tokens last."""
    return min(refresh_margin, lifetime / 2)


def subject_left(subject: SubjectToken | None, now: float) -> float | None:
    """token_exchange: seconds until the caller's token expires (0 or less: it has), when it
    says (a JWT's `exp`)."""
    if subject is None or subject.expires is None:
        return None
    return subject.expires - now


def refuse_expired(caller_left: float | None) -> None:
    """Nothing is exchanged for a caller's token that has expired."""
    if caller_left is not None and caller_left <= 0:
        raise CallerTokenRefused("the caller's token has expired")


def capped_by_subject(
    lifetime: float, margin: float, caller_left: float | None
) -> tuple[float, float]:
    """An exchanged token's lifetime and renewal margin: it is not used past the caller's token
    (RFC 8693 §2.1 leaves that to the client), and one that ends with it is not renewed ahead,
    as the renewal would end no later."""
    if caller_left is None or caller_left > lifetime:
        return lifetime, margin
    return caller_left, 0.0


@dataclass(frozen=True)
class Backoff:
    """How long to leave a failing token endpoint alone before the next token request.

    Transient failures back off exponentially with jitter (so a fleet does not retry in step);
    permanent ones (a wrong secret, an unknown scope) wait the longest. A server's Retry-After
    is honoured, within `max_retry_after`.
    """

    initial: float = 1.0
    maximum: float = 60.0
    max_retry_after: float = 600.0

    def delay(
        self,
        failures: int,
        *,
        permanent: bool,
        retry_after: float | None,
        rng: random.Random,
    ) -> float:
        if permanent:
            wait = self.maximum
        else:
            ceiling = min(self.maximum, self.initial * 2 ** max(0, failures - 1))
            wait = rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


def is_permanent(oauth_error: str | None) -> bool:
    return oauth_error in PERMANENT_ERRORS


@dataclass(frozen=True)
class _Failure:
    """The last failed acquisition: shared with every caller until `until` (monotonic)."""

    error: TokenError
    until: float
    count: int


class FailureMemory:
    """A short negative cache per grant, with the backoff schedule of `policy.Backoff`."""

    def __init__(self, clock: Clock, backoff: Backoff, rng: random.Random) -> None:
        self._clock = clock
        self._backoff = backoff
        self._rng = rng
        self._failures: dict[Hashable, _Failure] = {}

    def backing_off(self, key: Hashable) -> bool:
        failure = self._failures.get(key)
        return failure is not None and self._clock.monotonic() < failure.until

    def raise_if_recent(self, key: Hashable) -> None:
        """Gives the caller the last failure again, without a new token request, until it ends.

        Its `retry_after` (a 503's Retry-After) is the time left, when the server named one.
        """
        failure = self._failures.get(key)
        if failure is None:
            return
        left = failure.until - self._clock.monotonic()
        if left <= 0:
            return
        error = failure.error
        retry_after = left if error.retry_after is not None else None
        raise type(error)(
            error.cause, oauth_error=error.oauth_error, status=error.status, retry_after=retry_after
        )

    def sign_in_required(self, key: Hashable) -> bool:
        """The user's refresh token was refused: nothing is tried until a new one is given."""
        failure = self._failures.get(key)
        return failure is not None and isinstance(failure.error, SignInRequired)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def record(
        self, backend: str, key: Hashable, error: TokenError, still_valid: float | None
    ) -> None:
        """Remembers a failure and logs it once; `still_valid`: seconds the current token has."""
        previous = self._failures.get(key)
        count = previous.count + 1 if previous is not None else 1
        permanent = is_permanent(error.oauth_error)
        wait = self._backoff.delay(
            count, permanent=permanent, retry_after=error.retry_after, rng=self._rng
        )
        if isinstance(error, SignInRequired):
            wait = math.inf  # until a new refresh token is configured (or oauth.refresh)
        self._failures[key] = _Failure(error, self._clock.monotonic() + wait, count)
        if isinstance(error, CallerTokenRefused):
            return  # the caller's matter: the addon tells the operator once per backend and cause
        if isinstance(error, SignInRequired):
            logger.error(
                "backend %s: no token: %s; requests get 502 and no token request is made until "
                "then",
                backend,
                describe(error),
            )
            return
        if still_valid is not None:
            outcome = f"current token used until it expires in {still_valid:.0f} s"
        else:
            outcome = "requests get an error"
        logger.warning(
            "backend %s: no token: %s (%s; next try in %.1f s%s)",
            backend,
            describe(error),
            outcome,
            wait,
            ", permanent error" if permanent else "",
        )


def describe(error: TokenError) -> str:
    if error.description:
        return f"{error.cause}: {error.description}"
    return error.cause
