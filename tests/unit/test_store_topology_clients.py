"""What each topology's URL and options become in redis-py's clients, before anything connects:
TLS with the CA given, the password for the data nodes and the Sentinels' own, the timeout."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelManagedSSLConnection

from mitm_oauth2.model.errors import ConfigError
from mitm_oauth2.store.codec import TokenCodec
from mitm_oauth2.store.redis import RedisTokenStore
from mitm_oauth2.store.settings import store_settings

CA = Path("/etc/hostname")  # any readable file: nothing is connected
ENV = {"PW": "data-pw", "SPW": "sentinel-pw"}


def client(store: str, **options: str):
    settings = store_settings(
        store=store,
        cache_dir=Path("/tmp/cache"),
        password_env="PW",
        key_env="",
        timeout_ms=300,
        ca_file=str(CA) if store.startswith("rediss") else "",
        environ=ENV,
        **options,
    )
    assert settings.redis is not None
    password = settings.redis_password.reveal() if settings.redis_password else None
    sentinel = settings.sentinel_password.reveal() if settings.sentinel_password else None
    store_ = RedisTokenStore.connect_to(
        settings.redis, password, settings.timeout, TokenCodec(None), settings.ca_file, sentinel
    )
    return store_._redis


def test_sentinel_over_tls_asks_the_sentinels_with_their_own_password() -> None:
    primary = client("rediss+sentinel://s1,s2:26380/tokens/1", sentinel_password_env="SPW")
    pool = primary.connection_pool
    assert pool.connection_class is SentinelManagedSSLConnection
    wanted = {"password": "data-pw", "ssl_ca_certs": str(CA), "db": 1, "socket_timeout": 0.3}
    assert {key: pool.connection_kwargs.get(key) for key in wanted} == wanted
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
    for sentinel in sentinels:
        assert sentinel.connection_pool.connection_class is SSLConnection
        assert sentinel.connection_pool.connection_kwargs["password"] == "sentinel-pw"
        assert sentinel.connection_pool.connection_kwargs["ssl_ca_certs"] == str(CA)


def test_sentinels_without_a_password_of_their_own_are_asked_without_one() -> None:
    pool = client("redis+sentinel://s1/tokens").connection_pool
    assert pool.connection_kwargs["password"] == "data-pw"
    for sentinel in pool.sentinel_manager.sentinels:
        assert sentinel.connection_pool.connection_kwargs.get("password") is None


def test_a_cluster_over_tls_starts_from_the_nodes_given() -> None:
    cluster = client("rediss+cluster://c1:7000,c2")
    assert isinstance(cluster, RedisCluster)
    assert list(cluster.nodes_manager.startup_nodes) == ["c1:7000", "c2:6379"]
    assert cluster.connection_kwargs["connection_class"] is SSLConnection
    wanted = {"password": "data-pw", "ssl_ca_certs": str(CA), "socket_timeout": 0.3}
    assert {key: cluster.connection_kwargs.get(key) for key in wanted} == wanted


@pytest.mark.parametrize("store", ["redis://r/0", "redis+cluster://c1"])
def test_a_sentinel_password_is_only_for_sentinels(store: str) -> None:
    with pytest.raises(ConfigError, match="oauth2_store_sentinel_password_env: only for"):
        store_settings(
            store=store,
            cache_dir=Path("/tmp/cache"),
            password_env="",
            key_env="",
            timeout_ms=300,
            sentinel_password_env="SPW",
            environ=ENV,
        )
