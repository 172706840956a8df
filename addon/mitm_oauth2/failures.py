"""What the broker remembers of failed token requests: who waits how long before the next one."""

from __future__ import annotations

import logging
import random
from collections.abc import Hashable
from dataclasses import dataclass

from .clock import Clock
from .policy import Backoff
from .policy import is_permanent
from .tokens import TokenError

logger = logging.getLogger(__name__)


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
        raise TokenError(
            error.cause, oauth_error=error.oauth_error, status=error.status, retry_after=retry_after
        )

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
        self._failures[key] = _Failure(error, self._clock.monotonic() + wait, count)
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
