"""The Redis token store against a real redis-server: what the fleet relies on, key by key."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.token import Token
from mitm_oauth2.store.codec import TokenCodec
from mitm_oauth2.store.redis import RedisTokenStore
from mitm_oauth2.store.topology import redis_target
from tests.support.redis_server import RedisServer
from tests.unit.broker_fakes import check_the_lock
from tests.unit.broker_fakes import with_credentials

pytestmark = pytest.mark.anyio

SECRET = "redis-test-secret-7f3a"
TOKEN = Token("tok-redis-1", "Bearer", issued_at=1_700_000_000.0, lifetime=120.0, scope=None)
GRANT = TokenGrant(
    "ledger",
    ClientCredentials(
        client_id="proxy", token_url="https://idp.test/token", client_secret=Secret(SECRET)
    ),
    max_token_age=3600.0,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def open_store(server: RedisServer, key: str | None = None) -> RedisTokenStore:
    """One proxy's store: each has its own client, as each process of a fleet does."""
    return RedisTokenStore.connect_to(redis_target(server.url), None, 2.0, TokenCodec(key))


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[list[RedisTokenStore]]:
    opened = [await open_store(redis_server).connected() for _ in range(2)]
    yield opened
    for store in opened:
        await store.aclose()


def everything_in(server: RedisServer) -> bytes:
    """Every key and value (all strings) Redis holds, as the store wrote them."""
    with server.client() as client:
        keys = sorted(client.keys("*"))
        return b"\n".join(keys + [client.get(key) or b"" for key in keys])


async def test_a_token_saved_by_one_proxy_is_read_by_another(stores) -> None:
    first, second = stores
    await first.save(GRANT, TOKEN, ttl=120)
    assert await second.load(GRANT) == TOKEN
    rotated = with_credentials(GRANT, client_secret=Secret(SECRET + "-rotated"))
    assert await second.load(rotated) is None  # another secret, another key


async def test_the_ttl_is_the_tokens_remaining_life(stores, redis_server: RedisServer) -> None:
    await stores[0].save(GRANT, TOKEN, ttl=90.5)
    with redis_server.client() as client:
        (key,) = client.keys("mitm-oauth2:token/v1/ledger/*")
        assert 89_000 < client.pttl(key) <= 90_500


async def test_neither_secret_nor_token_appears_in_keys_and_no_secret_in_values(
    stores, redis_server: RedisServer
) -> None:
    await stores[0].save(GRANT, TOKEN, ttl=120)
    await stores[0].try_lock(GRANT, "owner-1", lease=30)
    dump = everything_in(redis_server)
    assert SECRET.encode() not in dump
    with redis_server.client() as client:
        assert all(b"tok-redis" not in key for key in client.keys("*"))


async def test_with_a_store_key_tokens_are_sealed_and_proxies_with_the_key_read_them(
    redis_server: RedisServer,
) -> None:
    key = "fleet-store-key-0123456789"
    writer, reader = open_store(redis_server, key), open_store(redis_server, key)
    stranger = open_store(redis_server, "another-key-0123456789")
    try:
        await writer.save(GRANT, TOKEN, ttl=120)
        assert b"tok-redis" not in everything_in(redis_server)
        assert await reader.load(GRANT) == TOKEN
        assert await stranger.load(GRANT) is None  # another key: other cache keys, no token
    finally:
        for store in (writer, reader, stranger):
            await store.aclose()


async def test_the_lock_is_exclusive_expires_with_its_lease_and_only_its_owner_releases_it(
    stores, redis_server: RedisServer
) -> None:
    first, second = stores
    await check_the_lock(first, second, GRANT, lease=30)
    with redis_server.client() as client:
        (lock,) = client.keys("mitm-oauth2:lock/*")
        assert 0 < client.pttl(lock) <= 30_000  # a holder that dies frees it within the lease


async def test_delete_if_keeps_a_token_renewed_meanwhile(stores) -> None:
    first, second = stores
    await first.save(GRANT, TOKEN, ttl=120)
    renewed = dataclasses.replace(TOKEN, access_token="tok-redis-2")
    await second.save(GRANT, renewed, ttl=120)
    await first.delete_if(GRANT, TOKEN.access_token)  # a 401 for the old token
    assert await first.load(GRANT) == renewed
    await first.delete_if(GRANT, renewed.access_token)
    assert await second.load(GRANT) is None


async def test_proxies_agree_on_cache_keys_after_redis_lost_its_data(
    redis_server: RedisServer,
) -> None:
    """A proxy that knew the fleet's key publishes it again, so one started after the loss
    finds the tokens the older ones save."""
    old = await open_store(redis_server).connected()
    await old.save(GRANT, TOKEN, ttl=120)
    redis_server.kill()
    redis_server.start()
    await old.connected()  # the guard reconnects like this after a failure
    await old.save(GRANT, TOKEN, ttl=120)
    newcomer = await open_store(redis_server).connected()
    try:
        assert await newcomer.load(GRANT) == TOKEN
    finally:
        await old.aclose()
        await newcomer.aclose()
