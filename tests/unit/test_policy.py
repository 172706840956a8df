"""The renewal rules: lifetime, margin, backoff, which errors are permanent."""

from __future__ import annotations

import random

import pytest

from mitm_oauth2.tokens.policy import PERMANENT_ERRORS
from mitm_oauth2.tokens.policy import Backoff
from mitm_oauth2.tokens.policy import is_permanent
from mitm_oauth2.tokens.policy import safety_margin
from mitm_oauth2.tokens.policy import token_lifetime


@pytest.mark.parametrize(
    ("expires_in", "max_age", "expected", "warns"),
    [
        (None, 3600, 3600, False),
        (0, 3600, 3600, True),
        (-5, 3600, 3600, True),
        (0.2, 3600, 1, True),
        (60, 3600, 60, False),
        (3599.9, 3600, 3599.9, False),
        (7200, 3600, 3600, False),
        (2**40, 3600, 3600, False),
        (3600, 120, 120, False),
    ],
)
def test_token_lifetime(expires_in, max_age, expected, warns) -> None:
    lifetime, warning = token_lifetime(expires_in, max_age)
    assert lifetime == expected
    assert (warning is not None) == warns


@pytest.mark.parametrize(
    ("lifetime", "margin", "expected"),
    [(3600, 30, 30), (61, 30, 30), (60, 30, 30), (40, 30, 20), (20, 30, 10), (1, 30, 0.5)],
)
def test_safety_margin(lifetime, margin, expected) -> None:
    assert safety_margin(lifetime, margin) == expected


def test_safety_margin_is_configurable() -> None:
    assert safety_margin(3600, 300) == 300
    assert safety_margin(3600, 0) == 0


def test_transient_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    backoff, rng = Backoff(initial=1, maximum=60), random.Random(7)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)]:
        delays = [
            backoff.delay(failures, permanent=False, retry_after=None, rng=rng) for _ in range(50)
        ]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, so a fleet does not retry in step


def test_permanent_failures_wait_the_maximum() -> None:
    delay = Backoff(maximum=60).delay(1, permanent=True, retry_after=None, rng=random.Random())
    assert delay == 60


@pytest.mark.parametrize(("retry_after", "expected"), [(120, 120), (10**6, 600), (0.1, None)])
def test_retry_after_is_honoured_within_bounds(retry_after, expected) -> None:
    delay = Backoff().delay(1, permanent=False, retry_after=retry_after, rng=random.Random(1))
    if expected is None:
        assert 0.5 <= delay <= 1  # a shorter Retry-After does not shorten our backoff
    else:
        assert delay == expected


def test_the_six_rfc6749_errors_are_permanent() -> None:
    assert len(PERMANENT_ERRORS) == 6
    assert all(is_permanent(code) for code in PERMANENT_ERRORS)
    assert not is_permanent("temporarily_unavailable")
    assert not is_permanent(None)
