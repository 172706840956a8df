"""The renewal rules as pure functions: lifetimes, margins, which failures to retry and when."""

from __future__ import annotations

import random
from dataclasses import dataclass

DEFAULT_REFRESH_MARGIN = 30.0
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
