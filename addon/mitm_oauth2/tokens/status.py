"""Per-backend counters behind `oauth.status`: JSON-safe, never a token or a secret."""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field

from ..model.errors import TokenError


@dataclass
class BackendCounters:
    fetches: int = 0
    cache_hits: int = 0
    replays: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # by cause: OAuth error or HTTP status
    last_error: str | None = None

    def failed(self, error: TokenError) -> None:
        cause = error.oauth_error or (f"http_{error.status}" if error.status else "unavailable")
        self.failures[cause] = self.failures.get(cause, 0) + 1
        self.last_error = error.cause

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Counters:
    def __init__(self) -> None:
        self._by_backend: dict[str, BackendCounters] = {}

    def of(self, backend: str) -> BackendCounters:
        return self._by_backend.setdefault(backend, BackendCounters())
