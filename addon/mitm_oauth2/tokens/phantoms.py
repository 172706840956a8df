"""Phantom tokens: what a sandboxed client gets when it asks for a token itself. Random and
opaque, unknown to any server, each good for one backend and no longer than the real token it
stands for; the proxy swaps it for the real one on the way to that backend.

Kept by digest (a phantom token is a credential for the proxy: never a key in memory as it is),
at most MAX_PHANTOMS, the oldest forgotten first.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from ..model.clock import Clock
from ..model.clock import SystemClock

MAX_PHANTOMS = 100_000
PREFIX = "phantom."  # says what it is to anyone who sees it where it should not be


@dataclass(frozen=True)
class _Issued:
    backend: str
    until: float  # on the monotonic clock


class Phantoms:
    """The phantom tokens this process issued."""

    def __init__(self, clock: Clock | None = None, limit: int = MAX_PHANTOMS) -> None:
        self._clock = clock or SystemClock()
        self._limit = limit
        self._issued: OrderedDict[bytes, _Issued] = OrderedDict()

    def issue(self, backend: str, lifetime: float) -> str:
        """A new phantom token for `backend`, good for `lifetime` seconds."""
        token = PREFIX + secrets.token_urlsafe(32)
        now = self._clock.monotonic()
        self._issued[_digest(token)] = _Issued(backend, now + lifetime)
        # The oldest first: those that have expired, and beyond the bound whatever is oldest.
        while self._issued:
            oldest = next(iter(self._issued.values()))
            if len(self._issued) <= self._limit and now < oldest.until:
                break
            self._issued.popitem(last=False)
        return token

    def refusal(self, token: str, backend: str) -> str | None:
        """Why `token` does not stand for `backend`'s token (None: it does)."""
        issued = self._issued.get(_digest(token))
        if issued is None:
            return "it is no phantom token this proxy issued"
        if issued.backend != backend:
            return f"it was issued for another backend ({issued.backend})"
        if self._clock.monotonic() >= issued.until:
            return "it has expired: ask the token endpoint for a new one"
        return None

    def __len__(self) -> int:
        return len(self._issued)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
