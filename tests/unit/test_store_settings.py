"""The oauth2_store* options: every bad value refused with the option named, no secret echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitm_oauth2.model.errors import ConfigError
from mitm_oauth2.store.settings import store_settings

CACHE = Path("/tmp/cache")


def settings(store: str = "", **options):
    values = {"password_env": "", "key_env": "", "timeout_ms": 500, "environ": {}} | options
    return store_settings(store=store, cache_dir=CACHE, **values)


def test_default_is_the_disk_cache() -> None:
    chosen = settings()
    assert (chosen.redis_url, chosen.where, chosen.timeout) == (None, "token cache /tmp/cache", 0.5)


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
    ("store", "options", "message"),
    [
        ("memcached://m:11211", {}, "oauth2_store: must be empty (the disk cache) or a redis://"),
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
