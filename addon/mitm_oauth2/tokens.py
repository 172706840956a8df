"""Tokens and token failures: the values the broker, the client and the store pass around."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from dataclasses import field
from typing import Protocol

from .credentials import ClientCredentials


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

    @property
    def expires_at(self) -> float:
        return self.issued_at + self.lifetime

    @functools.cached_property
    def fingerprint(self) -> str:
        """Enough of a digest to tell two tokens apart in flows and logs; never the token.
        Computed once per token, not per request."""
        return hashlib.sha256(self.access_token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TokenResponse:
    """What the token endpoint said, before any policy is applied (RFC 6749 §5.1)."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: float | None
    scope: str | None


class TokenError(Exception):
    """No token could be had.

    `cause` is safe to show to callers and operators. `description` is the server's own
    error_description, scrubbed of the secret: for the operator's log line, not for callers.
    `retry_after` is how many seconds the server (or our backoff after its Retry-After) asks
    callers to wait, when known.
    """

    def __init__(
        self,
        cause: str,
        *,
        oauth_error: str | None = None,
        status: int | None = None,
        description: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.oauth_error = oauth_error
        self.status = status
        self.description = description
        self.retry_after = retry_after


@dataclass(frozen=True)
class Issued:
    """A token handed out, and its story for the flow that gets it (JSON-safe except `token`)."""

    token: Token
    source: str  # "cache": already here; "fetched": this request waited for a token request
    renewing: bool  # a renewal runs in the background
    age: float  # seconds since the token was requested
    left: float  # seconds until it expires


class TokenEndpoint(Protocol):
    """The one thing the broker needs from a client: a token request."""

    async def request_token(self, credentials: ClientCredentials) -> TokenResponse: ...

    async def aclose(self) -> None: ...
