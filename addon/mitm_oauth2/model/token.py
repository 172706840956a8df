"""Tokens: the values the broker, the client and the store pass around."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from dataclasses import field

from .claims import Claims
from .claims import read_claims
from .credentials import DpopKey


@dataclass(frozen=True)
class Token:
    """An access token as issued, with when it was asked for and how long it may be used.

    `issued_at` is the wall-clock time (epoch seconds) at which the token request was *sent*, so
    network latency never extends a token's life. `lifetime` already applies our own limits.
    """

    access_token: str = field(repr=False)
    token_type: str
    issued_at: float
    lifetime: float
    scope: str | None = None
    # DPoP: the key the token is bound to; its proofs are signed with it. Not part of what
    # makes two tokens the same: a token read back from the store is the one written.
    dpop_key: DpopKey | None = field(default=None, repr=False, compare=False)

    @property
    def expires_at(self) -> float:
        return self.issued_at + self.lifetime

    @functools.cached_property
    def claims(self) -> Claims | None:
        """What the token says of itself when it is a JWT (None: opaque); read once per token."""
        return read_claims(self.access_token)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Enough of a digest to tell two tokens apart in flows and logs; never the token.
        Computed once per token, not per request."""
        return fingerprint(self.access_token)


def fingerprint(access_token: str) -> str:
    """The first 12 hex digits of the token's SHA-256: what flows, logs and the status show."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TokenResponse:
    """What the token endpoint said, before any policy is applied (RFC 6749 §5.1)."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: float | None
    scope: str | None
    refresh_token: str | None = field(default=None, repr=False)  # RFC 6749 §5.1, §6: rotated
