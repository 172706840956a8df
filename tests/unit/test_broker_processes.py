"""The broker across restarts and processes: the persisted token is reused (never past its
lifetime, whatever the wall clock does), and brokers sharing a disk store make one request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.store.disk import DiskTokenStore
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import START
from tests.unit.broker_fakes import settle

pytestmark = pytest.mark.anyio


@pytest.fixture
async def persisted(endpoint, store, clock, make_grant) -> None:
    """tok-1 in the store, fetched by a broker (a process) that is gone now."""
    await TokenBroker(endpoint, store, clock).token(make_grant())


async def restarted(endpoint, store, clock, grant) -> TokenBroker:
    """A new broker on `store`, as a restarted process makes: it serves the persisted tok-1
    (asserted) before the test goes on with it."""
    broker = TokenBroker(endpoint, store, clock)
    assert (await broker.token(grant)).access_token == "tok-1"
    return broker


async def test_restart_reuses_the_persisted_token(
    persisted, endpoint, store, clock, make_grant
) -> None:
    clock.advance(600)
    clock.now_mono = 3.0  # a new process: its monotonic clock starts anywhere
    broker = await restarted(endpoint, store, clock, make_grant())
    assert endpoint.calls == 1
    clock.advance(3000)  # the lifetime still counts from the first fetch: expired now
    assert (await broker.token(make_grant())).access_token == "tok-2"


async def test_restart_with_a_due_token_serves_it_and_renews_behind(
    persisted, endpoint, store, clock, make_grant
) -> None:
    clock.advance(3600 - 20)  # due (30 s margin), still usable (until 10 s before expiry)
    broker = await restarted(endpoint, store, clock, make_grant())
    await settle(broker)
    assert (await broker.token(make_grant())).access_token == "tok-2"
    assert endpoint.calls == 2


async def test_restart_during_an_outage_serves_the_persisted_token_until_expiry(
    persisted, endpoint, store, clock, make_grant
) -> None:
    clock.since_start(3580)
    endpoint.failure = TokenError("cannot connect to token endpoint")
    broker = await restarted(endpoint, store, clock, make_grant())
    await settle(broker)
    clock.since_start(3590)  # 10 s before expiry: given up, not sent to expire on its way
    with pytest.raises(TokenError):
        await broker.token(make_grant())


async def test_restart_with_real_disk_store(tmp_path: Path, endpoint, clock, make_grant) -> None:
    first = TokenBroker(endpoint, DiskTokenStore.open_sync(tmp_path / "cache"), clock)
    assert (await first.token(make_grant())).access_token == "tok-1"
    first.close()
    clock.advance(60)
    second = TokenBroker(endpoint, DiskTokenStore.open_sync(tmp_path / "cache"), clock)
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


async def test_wall_clock_set_back_does_not_extend_a_persisted_token(
    persisted, endpoint, store, clock, make_grant
) -> None:
    clock.advance(10)
    clock.now_wall -= 3600  # the system clock is set back by an hour
    endpoint.failure = TokenError("cannot connect to token endpoint")  # so nothing renews it
    broker = await restarted(endpoint, store, clock, make_grant())
    clock.advance(3590 - 0.001)  # at most one lifetime (less the 10 s skew) from the restart...
    await broker.token(make_grant())
    clock.advance(0.001)  # ...and not a moment more
    with pytest.raises(TokenError):
        await broker.token(make_grant())


async def test_processes_sharing_a_store_make_one_token_request(
    tmp_path: Path, endpoint, clock, make_grant
) -> None:
    """Two brokers on one cache directory stand for two mitmdump processes."""
    first = TokenBroker(endpoint, DiskTokenStore.open_sync(tmp_path / "c"), clock, lock_poll=0.001)
    second = TokenBroker(endpoint, DiskTokenStore.open_sync(tmp_path / "c"), clock, lock_poll=0.001)
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
    store = DiskTokenStore.open_sync(tmp_path / "c")
    broker = TokenBroker(endpoint, store, clock, lock_poll=0.01)
    assert await store.try_lock(make_grant(), "killed-process", lease=0.3)  # never released
    token = await asyncio.wait_for(broker.token(make_grant()), timeout=10)
    assert token.access_token == "tok-1"
    assert endpoint.calls == 1
    broker.close()
