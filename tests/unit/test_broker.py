"""The broker: reuse while fresh, renew ahead in the background, one token request for a crowd,
shared failures with backoff, compare-and-delete on rejection. A fake clock; no sleeping."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from mitm_oauth2.broker import TokenBroker
from mitm_oauth2.credentials import ClientCredentials
from mitm_oauth2.policy import Backoff
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

    async def try_lock(self, key: str, owner: str, lease: float) -> bool:
        return True

    async def unlock(self, key: str, owner: str) -> None:
        pass

    async def delete_if(self, key: str, access_token: str) -> None:
        if key in self.tokens and self.tokens[key].access_token == access_token:
            del self.tokens[key]

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


async def settle(broker: TokenBroker) -> None:
    """Lets background renewals finish (they run on the loop; the test drives the clock)."""
    await asyncio.gather(*list(broker._inflight.values()), return_exceptions=True)


@pytest.mark.parametrize(
    ("expires_in", "max_age", "renew_after"),
    [(3600, 3600, 3570), (None, 3600, 3570), (7200, 3600, 3570), (60, 3600, 30), (20, 3600, 10)],
)
async def test_reuse_then_renew_ahead_without_waiting(
    endpoint, store, clock, make_grant, expires_in, max_age, renew_after
) -> None:
    endpoint.expires_in = expires_in
    broker = TokenBroker(endpoint, store, clock)
    grant = make_grant(max_token_age=max_age)
    first = await broker.token(grant)
    assert (first.access_token, first.token_type) == ("tok-1", "Bearer")
    clock.since_start(renew_after - 0.001)
    assert (await broker.token(grant)).access_token == "tok-1"
    assert endpoint.calls == 1
    clock.since_start(renew_after)
    endpoint.gate = asyncio.Event()  # the renewal hangs: callers must not notice
    endpoint.started = asyncio.Event()
    callers = [await broker.token(grant) for _ in range(50)]
    assert {token.access_token for token in callers} == {"tok-1"}
    await endpoint.started.wait()
    assert endpoint.calls == 2  # one background renewal, not one per caller
    endpoint.gate.set()
    await settle(broker)
    assert (await broker.token(grant)).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_a_20_second_token_is_fetched_every_10_to_20_seconds(
    broker, endpoint, clock, make_grant
) -> None:
    endpoint.expires_in = 20
    for second in range(200):  # a request every second for 200 s
        clock.since_start(second)
        assert (await broker.token(make_grant())).access_token.startswith("tok-")
        await settle(broker)
    assert 200 / 20 <= endpoint.calls <= 200 / 10 + 1


async def test_idle_past_expiry_the_next_caller_waits_for_a_new_token(
    broker, endpoint, clock, make_grant
) -> None:
    await broker.token(make_grant())
    clock.since_start(3600)
    assert (await broker.token(make_grant())).access_token == "tok-2"


async def test_issued_at_is_when_the_request_was_sent(broker, endpoint, clock, make_grant) -> None:
    endpoint.gate = asyncio.Event()
    task = asyncio.ensure_future(broker.token(make_grant()))
    await endpoint.started.wait()
    clock.advance(20)  # a slow token endpoint must not lengthen the token's life
    endpoint.gate.set()
    token = await task
    assert token.issued_at == START
    assert store_ttl_matches(broker, token)
    clock.since_start(3600)
    endpoint.gate = None
    assert (await broker.token(make_grant())).access_token == "tok-2"


def store_ttl_matches(broker: TokenBroker, token: Token) -> bool:
    store = broker._store
    return isinstance(store, MemoryStore) and token in store.tokens.values()


async def test_token_is_persisted_with_its_lifetime(broker, store, clock, make_grant) -> None:
    token = await broker.token(make_grant())
    key = store.cache_key(make_grant())
    assert store.tokens[key] == token
    assert store.ttls[key] == 3600


async def test_concurrent_callers_share_one_request(broker, endpoint, make_grant) -> None:
    endpoint.gate = asyncio.Event()
    tasks = [asyncio.ensure_future(broker.token(make_grant())) for _ in range(200)]
    await endpoint.started.wait()
    await asyncio.sleep(0)  # every caller has reached the broker
    assert not any(task.done() for task in tasks)
    endpoint.gate.set()
    tokens = await asyncio.gather(*tasks)
    assert endpoint.calls == 1
    assert {token.access_token for token in tokens} == {"tok-1"}


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
    assert endpoint.calls == 1


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


async def test_idp_down_serves_the_current_token_until_real_expiry_never_beyond(
    broker, endpoint, clock, make_grant, caplog
) -> None:
    assert (await broker.token(make_grant())).access_token == "tok-1"
    endpoint.failure = TokenError("cannot connect to token endpoint")
    for second in (3570, 3580, 3590, 3599.9):
        clock.since_start(second)
        assert (await broker.token(make_grant())).access_token == "tok-1"
        await settle(broker)
    assert "current token used until it expires" in caplog.text
    clock.since_start(3600)
    with pytest.raises(TokenError, match="cannot connect"):
        await broker.token(make_grant())
    endpoint.failure = None
    clock.since_start(3700)
    assert (await broker.token(make_grant())).access_token.startswith("tok-")


async def test_restart_reuses_the_persisted_token(endpoint, store, clock, make_grant) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant())
    clock.advance(600)
    clock.now_mono = 3.0  # a new process: its monotonic clock starts anywhere
    restarted = TokenBroker(endpoint, store, clock)
    assert (await restarted.token(make_grant())).access_token == "tok-1"
    assert endpoint.calls == 1
    clock.advance(3000)  # the lifetime still counts from the first fetch: expired now
    assert (await restarted.token(make_grant())).access_token == "tok-2"


async def test_restart_with_a_due_token_serves_it_and_renews_behind(
    endpoint, store, clock, make_grant
) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant())
    clock.advance(3600 - 10)
    restarted = TokenBroker(endpoint, store, clock)
    assert (await restarted.token(make_grant())).access_token == "tok-1"
    await settle(restarted)
    assert (await restarted.token(make_grant())).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_restart_during_an_outage_serves_the_persisted_token_until_expiry(
    endpoint, store, clock, make_grant
) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant())
    clock.since_start(3590)
    endpoint.failure = TokenError("cannot connect to token endpoint")
    restarted = TokenBroker(endpoint, store, clock)
    assert (await restarted.token(make_grant())).access_token == "tok-1"
    await settle(restarted)
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


async def test_changed_credentials_never_reuse_the_old_token(
    endpoint, store, clock, make_grant
) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant(secret="old"))
    rotated = TokenBroker(endpoint, store, clock)
    assert (await rotated.token(make_grant(secret="new"))).access_token == "tok-2"
    assert (
        await rotated.token(make_grant(token_url="https://idp2.test/t"))
    ).access_token == "tok-3"
    again = TokenBroker(endpoint, store, clock)
    assert (await again.token(make_grant(secret="new"))).access_token == "tok-2"
    assert endpoint.calls == 3


async def test_grants_do_not_share_tokens(broker, endpoint, make_grant) -> None:
    a = await broker.token(make_grant(backend="a"))
    b = await broker.token(make_grant(backend="b", client_id="other"))
    c = await broker.token(make_grant(backend="a", scopes=("admin",)))
    assert len({a.access_token, b.access_token, c.access_token}) == 3
    assert (await broker.token(make_grant(backend="a"))).access_token == a.access_token
    assert endpoint.calls == 3


async def test_invalidate_is_compare_and_delete(broker, endpoint, store, make_grant) -> None:
    grant = make_grant()
    await broker.token(grant)
    await broker.invalidate(grant, "tok-1")
    assert store.tokens == {}
    assert (await broker.token(grant)).access_token == "tok-2"
    await broker.invalidate(grant, "tok-1")  # a stale rejection must not evict the new token
    assert (await broker.token(grant)).access_token == "tok-2"
    assert next(iter(store.tokens.values())).access_token == "tok-2"
    assert endpoint.calls == 2


@pytest.mark.parametrize(("expires_in", "lifetime"), [(0, 3600), (-5, 3600), (0.2, 1)])
async def test_odd_expires_in_is_clamped_with_a_warning(
    broker, endpoint, make_grant, caplog, expires_in, lifetime
) -> None:
    endpoint.expires_in = expires_in
    assert (await broker.token(make_grant())).lifetime == lifetime
    assert f"expires_in {expires_in:g}" in caplog.text


async def test_wall_clock_set_back_does_not_extend_a_persisted_token(
    endpoint, store, clock, make_grant
) -> None:
    await TokenBroker(endpoint, store, clock).token(make_grant())
    clock.advance(10)
    clock.now_wall -= 3600  # the system clock is set back by an hour
    endpoint.failure = TokenError("cannot connect to token endpoint")  # so nothing renews it
    restarted = TokenBroker(endpoint, store, clock)
    assert (await restarted.token(make_grant())).access_token == "tok-1"
    clock.advance(3600 - 0.001)  # at most one lifetime from the restart...
    await restarted.token(make_grant())
    clock.advance(0.001)  # ...and not a moment more
    with pytest.raises(TokenError):
        await restarted.token(make_grant())


async def test_wall_clock_jumps_do_not_affect_a_running_broker(
    broker, endpoint, clock, make_grant
) -> None:
    await broker.token(make_grant())
    clock.now_wall += 7200  # forward: a valid token does not look expired
    assert (await broker.token(make_grant())).access_token == "tok-1"
    clock.now_wall -= 14400  # back: an expired token does not look valid
    clock.now_mono += 3600
    assert (await broker.token(make_grant())).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_close_cancels_and_closes(broker, endpoint, make_grant) -> None:
    endpoint.gate = asyncio.Event()
    waiter = asyncio.ensure_future(broker.token(make_grant()))
    await endpoint.started.wait()
    broker.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0)  # one loop turn: the scheduled endpoint close runs
    assert endpoint.closed


async def test_processes_sharing_a_store_make_one_token_request(
    tmp_path: Path, endpoint, clock, make_grant
) -> None:
    """Two brokers on one cache directory stand for two mitmdump processes."""
    first = TokenBroker(endpoint, DiskTokenStore(tmp_path / "c"), clock, lock_poll=0.001)
    second = TokenBroker(endpoint, DiskTokenStore(tmp_path / "c"), clock, lock_poll=0.001)
    endpoint.gate = asyncio.Event()
    holder = asyncio.ensure_future(first.token(make_grant()))
    await endpoint.started.wait()  # the first holds the lock and is asking the endpoint
    waiters = [asyncio.ensure_future(second.token(make_grant())) for _ in range(10)]
    await asyncio.sleep(0.05)  # give the waiters time to poll: they must not ask too
    assert endpoint.calls == 1
    endpoint.gate.set()
    tokens = await asyncio.gather(holder, *waiters)
    assert {token.access_token for token in tokens} == {"tok-1"}
    assert endpoint.calls == 1
    first.close()
    second.close()


async def test_a_dead_lock_holder_delays_the_others_by_at_most_its_lease(
    tmp_path: Path, endpoint, clock, make_grant
) -> None:
    store = DiskTokenStore(tmp_path / "c")
    broker = TokenBroker(endpoint, store, clock, lock_poll=0.01)
    key = store.cache_key(make_grant())
    assert await store.try_lock(key, "killed-process", lease=0.3)  # never released
    token = await asyncio.wait_for(broker.token(make_grant()), timeout=10)
    assert token.access_token == "tok-1"
    assert endpoint.calls == 1
    broker.close()
