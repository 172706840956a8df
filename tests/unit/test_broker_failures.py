"""The broker when the token endpoint fails: shared failures, backoff, Retry-After, permanent
errors, and the current token served through an outage until it expires. A fake clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.tokens.policy import Backoff
from tests.unit.broker_fakes import settle

pytestmark = pytest.mark.anyio


async def test_failure_is_shared_and_cached_then_retried_after_backoff(
    broker, endpoint, clock, make_grant
) -> None:
    endpoint.gate = asyncio.Event()
    endpoint.failure = TokenError("token endpoint answered HTTP 503", status=503)
    tasks = [asyncio.ensure_future(broker.token(make_grant())) for _ in range(20)]
    await endpoint.started.wait()
    endpoint.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert endpoint.calls == 1
    assert all(isinstance(result, TokenError) for result in results)
    endpoint.gate, endpoint.failure = None, None
    with pytest.raises(TokenError, match="HTTP 503"):  # the negative cache answers, no request
        await broker.token(make_grant())
    assert endpoint.calls == 1
    clock.advance(Backoff().initial)  # the first backoff is at most `initial`
    assert (await broker.token(make_grant())).access_token == "tok-2"


async def test_backoff_grows_while_failures_go_on(broker, endpoint, clock, make_grant) -> None:
    endpoint.failure = TokenError("cannot connect to token endpoint")
    attempts = []
    for second in range(0, 120):
        clock.since_start(second)
        with pytest.raises(TokenError):
            await broker.token(make_grant())
        attempts.append(endpoint.calls)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert endpoint.calls < 12  # not one request per second: 1, 2, 4, ... up to 60 s apart
    assert sum(gaps) == endpoint.calls - 1


@pytest.mark.parametrize("code", ["invalid_client", "invalid_scope", "unauthorized_client"])
async def test_permanent_errors_are_not_retried_hot(
    broker, endpoint, clock, make_grant, code
) -> None:
    endpoint.failure = TokenError(f"error '{code}'", oauth_error=code, status=400)
    for second in range(59):
        clock.since_start(second)
        with pytest.raises(TokenError) as info:
            await broker.token(make_grant())
        assert info.value.oauth_error == code
        assert info.value.retry_after is None  # nothing said when: a 502, not a 503
    assert endpoint.calls == 1
    clock.since_start(60)
    with pytest.raises(TokenError):
        await broker.token(make_grant())
    assert endpoint.calls == 2


async def test_retry_after_is_honoured_and_passed_on(broker, endpoint, clock, make_grant) -> None:
    endpoint.failure = TokenError("token endpoint answered HTTP 503", status=503, retry_after=120)
    with pytest.raises(TokenError):
        await broker.token(make_grant())
    clock.advance(20)
    with pytest.raises(TokenError) as info:
        await broker.token(make_grant())
    assert info.value.retry_after == pytest.approx(100)
    clock.advance(99)
    with pytest.raises(TokenError):
        await broker.token(make_grant())
    assert endpoint.calls == 1
    endpoint.failure = None
    clock.advance(1)
    assert (await broker.token(make_grant())).access_token == "tok-2"


async def test_idp_down_serves_the_current_token_until_just_before_expiry_never_beyond(
    broker, endpoint, clock, make_grant, caplog
) -> None:
    """Served until 10 s (a tenth of a short token's life) before it expires: one sent in its
    last moment would expire on its way to the backend."""
    assert (await broker.token(make_grant())).access_token == "tok-1"
    endpoint.failure = TokenError("cannot connect to token endpoint")
    for second in (3570, 3580, 3589.9):
        clock.since_start(second)
        assert (await broker.token(make_grant())).access_token == "tok-1"
        await settle(broker)
    assert "current token used until it expires" in caplog.text
    clock.since_start(3590)
    with pytest.raises(TokenError, match="cannot connect"):
        await broker.token(make_grant())
    endpoint.failure = None
    clock.since_start(3700)
    assert (await broker.token(make_grant())).access_token.startswith("tok-")
