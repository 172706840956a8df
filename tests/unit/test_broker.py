"""The broker: reuse while fresh, renew when due, one token request however many callers wait."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mitm_oauth2.broker import TokenBroker
from mitm_oauth2.broker import safety_margin
from mitm_oauth2.broker import token_lifetime
from mitm_oauth2.credentials import ClientCredentials
from mitm_oauth2.store import DiskTokenStore
from mitm_oauth2.store import derive_cache_key
from mitm_oauth2.tokens import Token
from mitm_oauth2.tokens import TokenError
from mitm_oauth2.tokens import TokenResponse

pytestmark = pytest.mark.anyio

START = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now_wall = START
        self.now_mono = 500.0

    def wall(self) -> float:
        return self.now_wall

    def monotonic(self) -> float:
        return self.now_mono

    def advance(self, seconds: float) -> None:
        self.now_wall += seconds
        self.now_mono += seconds

    def since_start(self, seconds: float) -> None:
        self.now_wall, self.now_mono = START + seconds, 500.0 + seconds


class FakeEndpoint:
    """Issues tok-1, tok-2, ...; can be held on `gate` or made to fail."""

    def __init__(self, expires_in: float | None = 3600) -> None:
        self.expires_in = expires_in
        self.calls = 0
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.failure: TokenError | None = None
        self.closed = False

    async def request_token(self, credentials: ClientCredentials) -> TokenResponse:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return TokenResponse(f"tok-{self.calls}", "Bearer", self.expires_in, None)

    async def aclose(self) -> None:
        self.closed = True


class MemoryStore:
    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.ttls: dict[str, float] = {}

    def cache_key(self, grant) -> str:
        return derive_cache_key(b"k" * 32, grant)

    async def load(self, key: str) -> Token | None:
        return self.tokens.get(key)

    async def save(self, key: str, token: Token, ttl: float) -> None:
        self.tokens[key] = token
        self.ttls[key] = ttl

    def close(self) -> None:
        pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint() -> FakeEndpoint:
    return FakeEndpoint()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def broker(endpoint, store, clock) -> TokenBroker:
    return TokenBroker(endpoint, store, clock)


@pytest.mark.parametrize(
    ("expires_in", "max_age", "expected"),
    [
        (None, 3600, 3600),
        (0, 3600, 3600),
        (-5, 3600, 3600),
        (60, 3600, 60),
        (3599.9, 3600, 3599.9),
        (7200, 3600, 3600),
        (3600, 120, 120),
    ],
)
def test_token_lifetime(expires_in, max_age, expected) -> None:
    assert token_lifetime(expires_in, max_age) == expected


@pytest.mark.parametrize(
    ("lifetime", "expected"),
    [(3600, 30), (61, 30), (60, 30), (40, 20), (10, 5), (1, 0.5)],
)
def test_safety_margin(lifetime, expected) -> None:
    assert safety_margin(lifetime) == expected


@pytest.mark.parametrize(
    ("expires_in", "max_age", "renew_after"),
    [
        (3600, 3600, 3570),
        (None, 3600, 3570),
        (7200, 3600, 3570),
        (60, 3600, 30),
        (10, 3600, 5),
        (None, 120, 90),
        (0, 40, 20),
    ],
)
async def test_reuse_then_renew(
    endpoint, store, clock, make_grant, expires_in, max_age, renew_after
) -> None:
    endpoint.expires_in = expires_in
    broker = TokenBroker(endpoint, store, clock)
    grant = make_grant(max_token_age=max_age)
    first = await broker.token(grant)
    assert (first.access_token, first.token_type) == ("tok-1", "Bearer")
    assert first.lifetime == token_lifetime(expires_in, max_age)
    clock.since_start(renew_after - 0.001)
    assert (await broker.token(grant)).access_token == "tok-1"
    assert endpoint.calls == 1
    clock.since_start(renew_after)
    assert (await broker.token(grant)).access_token == "tok-2"
    assert endpoint.calls == 2
    assert (await broker.token(grant)).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_token_is_persisted_with_its_lifetime(broker, store, clock, make_grant) -> None:
    token = await broker.token(make_grant())
    key = store.cache_key(make_grant())
    assert store.tokens[key] == token
    assert store.ttls[key] == 3600
    assert token.issued_at == clock.wall()


async def test_issued_at_is_when_the_request_was_sent(broker, endpoint, clock, make_grant) -> None:
    endpoint.gate = asyncio.Event()
    task = asyncio.ensure_future(broker.token(make_grant()))
    await endpoint.started.wait()
    clock.advance(20)  # a slow token endpoint must not lengthen the token's life
    endpoint.gate.set()
    token = await task
    assert token.issued_at == START
    clock.advance(3600 - 30 - 20)
    assert (await broker.token(make_grant())).access_token == "tok-2"


async def test_concurrent_callers_share_one_request(broker, endpoint, make_grant) -> None:
    endpoint.gate = asyncio.Event()
    entered = 0

    async def call() -> Token:
        nonlocal entered
        entered += 1
        return await broker.token(make_grant())

    tasks = [asyncio.ensure_future(call()) for _ in range(100)]
    await endpoint.started.wait()
    assert entered == 100  # every caller is waiting before the endpoint answers
    assert not any(task.done() for task in tasks)
    endpoint.gate.set()
    tokens = await asyncio.gather(*tasks)
    assert endpoint.calls == 1
    assert {token.access_token for token in tokens} == {"tok-1"}


async def test_failure_is_shared_then_retried(broker, endpoint, make_grant) -> None:
    endpoint.gate = asyncio.Event()
    endpoint.failure = TokenError("token endpoint answered HTTP 503", status=503)
    tasks = [asyncio.ensure_future(broker.token(make_grant())) for _ in range(20)]
    await endpoint.started.wait()
    endpoint.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert endpoint.calls == 1
    assert all(isinstance(result, TokenError) for result in results)
    assert {result.status for result in results} == {503}
    endpoint.gate, endpoint.failure = None, None
    assert (await broker.token(make_grant())).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_cancelled_caller_does_not_cancel_the_others(broker, endpoint, make_grant) -> None:
    endpoint.gate = asyncio.Event()
    leaver = asyncio.ensure_future(broker.token(make_grant()))
    stayer = asyncio.ensure_future(broker.token(make_grant()))
    await endpoint.started.wait()
    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    endpoint.gate.set()
    assert (await stayer).access_token == "tok-1"
    assert (await broker.token(make_grant())).access_token == "tok-1"
    assert endpoint.calls == 1


async def test_restart_reuses_the_persisted_token(endpoint, store, clock, make_grant) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant())
    clock.advance(600)
    clock.now_mono = 3.0  # a new process: its monotonic clock starts anywhere
    restarted = TokenBroker(endpoint, store, clock)
    assert (await restarted.token(make_grant())).access_token == "tok-1"
    assert endpoint.calls == 1
    clock.advance(3600 - 600 - 30)  # the lifetime still counts from the first fetch
    assert (await restarted.token(make_grant())).access_token == "tok-2"


async def test_restart_renews_a_persisted_token_that_is_due(
    endpoint, store, clock, make_grant
) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant())
    clock.advance(3600 - 10)
    restarted = TokenBroker(endpoint, store, clock)
    assert (await restarted.token(make_grant())).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_restart_during_an_outage_serves_the_persisted_token_until_expiry(
    endpoint, store, clock, make_grant
) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant())
    clock.since_start(3590)  # due for renewal, 10 s before expiry
    endpoint.failure = TokenError("cannot connect to token endpoint")
    restarted = TokenBroker(endpoint, store, clock)
    assert (await restarted.token(make_grant())).access_token == "tok-1"
    clock.since_start(3600)
    with pytest.raises(TokenError):
        await restarted.token(make_grant())


async def test_restart_with_real_disk_store(tmp_path: Path, endpoint, clock, make_grant) -> None:
    first = TokenBroker(endpoint, DiskTokenStore(tmp_path / "cache"), clock)
    assert (await first.token(make_grant())).access_token == "tok-1"
    first.close()
    clock.advance(60)
    second = TokenBroker(endpoint, DiskTokenStore(tmp_path / "cache"), clock)
    try:
        token = await second.token(make_grant())
        assert (token.access_token, token.issued_at) == ("tok-1", START)
        assert endpoint.calls == 1
        assert (await second.token(make_grant(secret="rotated"))).access_token == "tok-2"
    finally:
        second.close()
        await asyncio.sleep(0)  # one loop turn: the scheduled endpoint close runs
    assert endpoint.closed


async def test_changed_secret_never_reuses_the_old_token(
    endpoint, store, clock, make_grant
) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant(secret="old"))
    rotated = TokenBroker(endpoint, store, clock)  # restarted with the new secret
    assert (await rotated.token(make_grant(secret="new"))).access_token == "tok-2"
    again = TokenBroker(endpoint, store, clock)  # and the new secret's token is then reused
    assert (await again.token(make_grant(secret="new"))).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_grants_do_not_share_tokens(broker, endpoint, make_grant) -> None:
    a = await broker.token(make_grant(backend="a"))
    b = await broker.token(make_grant(backend="b", client_id="other"))
    c = await broker.token(make_grant(backend="a", scopes=("admin",)))
    assert len({a.access_token, b.access_token, c.access_token}) == 3
    assert (await broker.token(make_grant(backend="a"))).access_token == a.access_token
    assert endpoint.calls == 3


async def test_failed_renewal_serves_the_current_token_until_expiry(
    broker, endpoint, clock, make_grant
) -> None:
    assert (await broker.token(make_grant())).access_token == "tok-1"
    endpoint.failure = TokenError("cannot connect to token endpoint")
    clock.since_start(3580)  # due for renewal, not yet expired
    assert (await broker.token(make_grant())).access_token == "tok-1"
    assert endpoint.calls == 2
    clock.since_start(3599.9)
    assert (await broker.token(make_grant())).access_token == "tok-1"
    clock.since_start(3600)  # expired
    with pytest.raises(TokenError, match="cannot connect"):
        await broker.token(make_grant())
    assert endpoint.calls == 4
    endpoint.failure = None
    assert (await broker.token(make_grant())).access_token == "tok-5"


async def test_wall_clock_set_back_does_not_extend_a_persisted_token(
    endpoint, store, clock, make_grant
) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant())
    clock.advance(10)
    clock.now_wall -= 3600  # the system clock is set back by an hour
    restarted = TokenBroker(endpoint, store, clock)
    assert (await restarted.token(make_grant())).access_token == "tok-1"
    clock.advance(3600 - 30)  # not a second more than one lifetime from the restart
    assert (await restarted.token(make_grant())).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_wall_clock_set_back_does_not_extend_a_held_token(
    broker, endpoint, clock, make_grant
) -> None:
    await broker.token(make_grant())
    clock.now_wall -= 3600  # set back while the proxy runs
    clock.advance(3600 - 30)
    assert (await broker.token(make_grant())).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_wall_clock_jump_does_not_affect_a_running_broker(
    broker, endpoint, clock, make_grant
) -> None:
    await broker.token(make_grant())
    clock.now_wall += 7200
    assert (await broker.token(make_grant())).access_token == "tok-1"
    assert endpoint.calls == 1


async def test_close_cancels_and_closes(broker, endpoint, make_grant) -> None:
    endpoint.gate = asyncio.Event()
    waiter = asyncio.ensure_future(broker.token(make_grant()))
    await endpoint.started.wait()
    broker.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0)  # one loop turn: the scheduled endpoint close runs
    assert endpoint.closed
