"""The oauth2_store* options: every bad value refused with the option named, no secret echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitm_oauth2.model.errors import ConfigError
from mitm_oauth2.store.settings import store_settings
from mitm_oauth2.store.topology import Topology

CACHE = Path("/tmp/cache")


def settings(store: str = "", **options):
    values = {"password_env": "", "key_env": "", "timeout_ms": 500, "environ": {}} | options
    return store_settings(store=store, cache_dir=CACHE, **values)


def test_default_is_the_disk_cache() -> None:
    chosen = settings()
    assert (chosen.redis, chosen.where, chosen.timeout) == (None, "token cache /tmp/cache", 0.5)


def test_redis_with_password_and_key_from_the_environment() -> None:
    environ = {"REDIS_PW": "pw-123", "STORE_KEY": "k" * 32}
    chosen = settings(
        "rediss://proxy@redis.internal:6380/2",
        password_env="REDIS_PW",
        key_env="STORE_KEY",
        environ=environ,
    )
    assert chosen.redis_password is not None
    assert chosen.redis_password.reveal() == "pw-123"
    assert chosen.where == "token store rediss://redis.internal:6380/2"
    assert "pw-123" not in repr(chosen)


@pytest.mark.parametrize(
    ("store", "topology", "nodes", "where"),
    [
        (
            "redis+sentinel://s1:26380,s2,[::1]:26381/mymaster/2",
            Topology.SENTINEL,
            (("s1", 26380), ("s2", 26379), ("::1", 26381)),
            "token store redis+sentinel://s1:26380,s2:26379,[::1]:26381/mymaster/2",
        ),
        (
            "rediss+cluster://c1:7000,c2:7001",
            Topology.CLUSTER,
            (("c1", 7000), ("c2", 7001)),
            "token store rediss+cluster://c1:7000,c2:7001",
        ),
        ("redis://r", Topology.SERVER, (("r", 6379),), "token store redis://r:6379/0"),
    ],
)
def test_each_topology_names_its_nodes(store: str, topology, nodes, where: str) -> None:
    chosen = settings(store)
    assert chosen.redis is not None
    assert (chosen.redis.topology, chosen.redis.nodes, chosen.where) == (topology, nodes, where)
    assert chosen.redis.tls == store.startswith("rediss")


def test_a_sentinel_store_takes_a_user_and_the_password_from_the_environment() -> None:
    chosen = settings(
        "redis+sentinel://proxy@s1,s2/tokens", password_env="PW", environ={"PW": "pw-9"}
    )
    assert chosen.redis is not None
    assert (chosen.redis.service, chosen.redis.db, chosen.redis.username) == ("tokens", 0, "proxy")
    assert chosen.where == "token store redis+sentinel://s1:26379,s2:26379/tokens/0"


@pytest.mark.parametrize(
    ("store", "options", "message"),
    [
        ("memcached://m:11211", {}, "oauth2_store: must be empty (the disk cache) or redis://"),
        ("redis+sentinel://s1,s2", {}, "name the service the Sentinels monitor"),
        ("redis+sentinel://s1/mymaster/zero", {}, "database must be a number"),
        ("redis+sentinel://s1/mymaster/0/x", {}, "unexpected path"),
        ("redis+sentinel://:hunter2@s1/mymaster", {}, "oauth2_store: no password in the URL"),
        ("redis+cluster://c1:7000/3", {}, "a Redis Cluster has only database 0"),
        ("redis+cluster://c1:7000,:7001", {}, "':7001' names no host"),
        ("redis+cluster://c1:70000", {}, "oauth2_store: not a valid URL"),
        ("redis+cluster://c1?ssl_cert_reqs=none", {}, "takes no query"),
        ("redis://r1,r2/0", {}, "redis:// names one server"),
        (
            "redis+sentinel://s/m",
            {"ca_file": "/etc/hostname"},
            "oauth2_store_ca: only for a rediss",
        ),
        ("redis://:hunter2@r:6379/0", {}, "oauth2_store: no password in the URL"),
        ("redis://user:hunter2@r/0", {}, "oauth2_store: no password in the URL"),
        ("redis:///0", {}, "oauth2_store: the URL names no host"),
        ("redis://r:6379/cache", {}, "oauth2_store: database must be a number"),
        ("redis://r:99999/0", {}, "oauth2_store: not a valid URL"),
        ("", {"password_env": "PW"}, "oauth2_store_password_env: only for a redis:// store"),
        ("redis://r", {"password_env": "PW"}, "oauth2_store_password_env: environment variable PW"),
        ("", {"key_env": "KEY"}, "oauth2_store_key_env: environment variable KEY is not set"),
        ("", {"key_env": "KEY", "environ": {"KEY": "short"}}, "KEY must hold at least 16"),
        ("", {"timeout_ms": 0}, "oauth2_store_timeout: must be 1 to 60000 milliseconds"),
        ("redis://r", {"ca_file": "/etc/hostname"}, "oauth2_store_ca: only for a rediss://"),
        ("rediss://r", {"ca_file": "/nonexistent/ca.pem"}, "oauth2_store_ca: cannot read"),
    ],
)
def test_bad_values_are_refused_naming_the_option(store: str, options, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings(store, **options)
    assert message in str(refused.value)
    assert "hunter2" not in str(refused.value)
