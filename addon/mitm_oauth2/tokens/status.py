"""What the broker tells of a backend, for `oauth.status` and the metrics: never a token or a
secret, only where the token is, its timings, and counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from dataclasses import field

from ..model.errors import TokenError


class TokenPlace(enum.StrEnum):
    MEMORY = "memory"  # this process serves it
    STORE = "store"  # another process put it in the store; this one takes it at its next request
    NONE = "none"


@dataclass
class BackendCounters:
    fetches: int = 0
    cache_hits: int = 0
    replays: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # by cause: OAuth error or HTTP status
    last_error: str | None = None
    # a backend's insufficient_scope answers (RFC 6750 §3.1), and what the last one said
    scope_refusals: int = 0
    last_scope_refusal: str | None = None

    def scope_refused(self, description: str) -> None:
        self.scope_refusals += 1
        self.last_scope_refusal = description

    def failed(self, error: TokenError) -> None:
        cause = error.oauth_error or (f"http_{error.status}" if error.status else "unavailable")
        self.failures[cause] = self.failures.get(cause, 0) + 1
        self.last_error = error.cause


class Counters:
    def __init__(self) -> None:
        self._by_backend: dict[str, BackendCounters] = {}

    def of(self, backend: str) -> BackendCounters:
        counters = self._by_backend.get(backend)  # asked on every request: no object made then
        if counters is None:
            counters = self._by_backend[backend] = BackendCounters()
        return counters


@dataclass(frozen=True)
class BackendStatus:
    """One backend's token, counters and store, as the broker knows them now."""

    token: TokenPlace
    renewing: bool
    token_age_s: float | None  # None when there is no valid token
    token_left_s: float | None
    store: str  # what operators know the store by (never a password)
    store_ok: bool  # False while tokens are kept in this process because the store fails
    counters: BackendCounters
    # What the current token says of itself (decoded, not verified), "opaque" when it is no
    # JWT, None when there is no valid token.
    claims: dict[str, object] | str | None = None
    # token_exchange: the callers whose tokens this process remembers (None: another grant).
    callers: int | None = None
    # refresh_token, password: the server refused the user's refresh token (a person must sign
    # in again, and the proxy be given the new one).
    sign_in_required: bool = False

    def to_json(self) -> dict[str, object]:
        """The flat JSON object `oauth.status` prints for the backend."""
        report: dict[str, object] = {
            "token": self.token.value,
            "renewing": self.renewing,
            "store": self.store,
            "store_ok": self.store_ok,
        }
        if self.token_age_s is not None:
            report["token_age_s"] = self.token_age_s
            report["token_left_s"] = self.token_left_s
            report["claims"] = self.claims
        if self.callers is not None:
            report["callers"] = self.callers
        if self.sign_in_required:
            report["sign_in_required"] = True
        counters = self.counters
        return report | {
            "fetches": counters.fetches,
            "cache_hits": counters.cache_hits,
            "replays": counters.replays,
            "failures": dict(counters.failures),
            "last_error": counters.last_error,
            "scope_refusals": counters.scope_refusals,
            "last_scope_refusal": counters.last_scope_refusal,
        }
