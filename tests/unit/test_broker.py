"""The broker: reuse while fresh, renew ahead in the background, one token request for a crowd,
tokens per grant, compare-and-delete on rejection. A fake clock; no sleeping."""

from __future__ import annotations

import asyncio

import pytest

from mitm_oauth2.model.token import Token
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import START
from tests.unit.broker_fakes import MemoryStore
from tests.unit.broker_fakes import settle

pytestmark = pytest.mark.anyio


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


async def test_the_token_in_memory_is_handed_out_at_once_and_renewed_ahead(
    broker, endpoint, clock, make_grant
) -> None:
    """issue_held: the proxy's synchronous path on a cache hit; None sends it to issue."""
    grant = make_grant()
    assert broker.issue_held(grant) is None  # nothing in memory yet
    assert endpoint.calls == 0
    fetched = await broker.issue(grant)
    assert (fetched.source, fetched.token.access_token) == ("fetched", "tok-1")
    clock.since_start(100)
    held = broker.issue_held(grant)
    assert held is not None
    assert (held.source, held.token.access_token, held.age) == ("cache", "tok-1", 100.0)
    assert not held.renewing
    clock.since_start(3570)  # in the renewal margin: handed out, and one renewal starts
    due = broker.issue_held(grant)
    assert due is not None
    assert (due.token.access_token, due.renewing) == ("tok-1", True)
    await settle(broker)
    assert endpoint.calls == 2
    assert broker.status(grant, store_ok=True).counters.cache_hits == 2
    clock.since_start(2 * 3600)  # past the renewed token's end as well
    assert broker.issue_held(grant) is None


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
    assert store.tokens[make_grant()] == token
    assert store.ttls[make_grant()] == 3600


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


class BusyStore(MemoryStore):
    """Another process holds the lock until `free`; a load can be held after it has read."""

    def __init__(self) -> None:
        super().__init__()
        self.free = False
        self.hold: asyncio.Event | None = None
        self.holding = asyncio.Event()
        self.loads = 0

    async def load(self, grant):
        read = self.tokens.get(grant)
        if self.hold is not None:
            self.holding.set()
            await self.hold.wait()
            self.hold = None
        self.loads += 1
        return read

    async def try_lock(self, grant, owner, lease) -> bool:
        return self.free


async def test_a_rejected_token_read_from_the_store_before_its_eviction_is_never_taken_back(
    endpoint, clock, make_grant
) -> None:
    """A renewal waiting for another process's lock reads the store; a backend rejects the
    token meanwhile, and the read, made before the eviction, brings the token back: the
    replay that follows must get a new token, not the rejected one again."""
    store = BusyStore()
    broker = TokenBroker(endpoint, store, clock, lock_poll=0.001)
    grant = make_grant()
    store.free = True
    assert (await broker.token(grant)).access_token == "tok-1"
    store.free = False
    clock.advance(3580)  # due for renewal, still usable
    store.hold = asyncio.Event()
    assert (await broker.token(grant)).access_token == "tok-1"  # the renewal starts behind
    await store.holding.wait()  # it has read tok-1 and waits
    await broker.invalidate(grant, "tok-1")  # the backend rejected it
    store.hold.set()
    loads = store.loads
    while store.loads < loads + 2:  # the read came back, and the lock was polled again
        await asyncio.sleep(0)
    replay = asyncio.ensure_future(broker.token(grant))
    store.free = True
    assert (await replay).access_token == "tok-2"
    broker.close()


async def test_a_purge_keeps_nothing_of_a_token_request_under_way(
    broker, endpoint, store, make_grant
) -> None:
    """Who waited before the purge gets that request's token; it is neither kept nor stored,
    and the requests after the purge get a new one."""
    grant = make_grant()
    endpoint.gate = asyncio.Event()
    before = asyncio.ensure_future(broker.token(grant))
    await endpoint.started.wait()
    await broker.purge(grant)
    after = asyncio.ensure_future(broker.token(grant))
    for _ in range(5):
        await asyncio.sleep(0)
    assert endpoint.calls == 2  # the request after the purge did not join the earlier one
    endpoint.gate.set()
    assert ((await before).access_token, (await after).access_token) == ("tok-1", "tok-2")
    assert store.tokens[grant].access_token == "tok-2"
    assert (await broker.token(grant)).access_token == "tok-2"
    assert endpoint.calls == 2


@pytest.mark.parametrize(("expires_in", "lifetime"), [(0, 3600), (-5, 3600), (0.2, 1)])
async def test_odd_expires_in_is_clamped_with_a_warning(
    broker, endpoint, make_grant, caplog, expires_in, lifetime
) -> None:
    endpoint.expires_in = expires_in
    assert (await broker.token(make_grant())).lifetime == lifetime
    assert f"expires_in {expires_in:g}" in caplog.text


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
