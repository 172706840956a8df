"""Which token store to open, from the `oauth2_store*` options: checked before anything opens."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from ..model.clock import Clock
from ..model.credentials import Secret
from ..model.errors import ConfigError
from .codec import MIN_KEY_CHARS
from .codec import TokenCodec
from .disk import DiskTokenStore
from .guard import GuardedStore
from .redis import RedisTokenStore
from .topology import RedisTarget
from .topology import Topology
from .topology import redis_target


@dataclass(frozen=True)
class StoreSettings:
    """Where tokens live: a Redis (its URL holds no password), or None for the disk cache."""

    cache_dir: Path
    redis: RedisTarget | None = None
    redis_password: Secret | None = field(default=None, repr=False)
    key: Secret | None = field(default=None, repr=False)
    timeout: float = 0.5
    ca_file: Path | None = None
    sentinel_password: Secret | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        if self.redis is None:
            return f"token cache {self.cache_dir}"
        return self.redis.where

    def open(self, clock: Clock | None = None) -> GuardedStore:
        """The store, guarded; nothing is connected or read until the first call."""
        codec = TokenCodec(self.key.reveal() if self.key else None)
        target = self.redis
        if target is None:
            directory = self.cache_dir
            guard = GuardedStore(
                lambda: DiskTokenStore.open(directory, codec), self.where, self.timeout, clock=clock
            )
        else:
            password = self.redis_password.reveal() if self.redis_password else None
            sentinel = self.sentinel_password.reveal() if self.sentinel_password else None
            redis = RedisTokenStore.connect_to(
                target, password, self.timeout, codec, self.ca_file, sentinel
            )
            guard = GuardedStore(redis.connected, self.where, self.timeout, clock=clock)
        guard.open_soon()
        return guard


def store_settings(
    *,
    store: str,
    cache_dir: Path,
    password_env: str,
    key_env: str,
    sentinel_password_env: str = "",
    timeout_ms: int,
    ca_file: str = "",
    environ: Mapping[str, str] = os.environ,
) -> StoreSettings:
    """Validates the options; raises ConfigError naming the option at fault."""
    if not 1 <= timeout_ms <= 60_000:
        raise ConfigError("oauth2_store_timeout: must be 1 to 60000 milliseconds")
    redis = redis_target(store.strip()) if store.strip() else None
    if password_env and redis is None:
        raise ConfigError("oauth2_store_password_env: only for a redis:// store")
    password = _from_env("oauth2_store_password_env", password_env, environ)
    if sentinel_password_env and (redis is None or redis.topology is not Topology.SENTINEL):
        raise ConfigError("oauth2_store_sentinel_password_env: only for a redis+sentinel:// store")
    sentinel_password = _from_env(
        "oauth2_store_sentinel_password_env", sentinel_password_env, environ
    )
    key = _from_env("oauth2_store_key_env", key_env, environ)
    if key is not None and len(key.reveal()) < MIN_KEY_CHARS:
        raise ConfigError(
            f"oauth2_store_key_env: {key_env} must hold at least {MIN_KEY_CHARS} characters "
            "(e.g. `openssl rand -base64 32`)"
        )
    ca = _ca_file(ca_file, redis)
    return StoreSettings(cache_dir, redis, password, key, timeout_ms / 1000, ca, sentinel_password)


def _ca_file(path: str, redis: RedisTarget | None) -> Path | None:
    if not path:
        return None
    if redis is None or not redis.tls:
        raise ConfigError("oauth2_store_ca: only for a rediss:// store")
    ca = Path(path).expanduser()
    try:
        ca.read_bytes()
    except OSError as e:
        raise ConfigError(f"oauth2_store_ca: cannot read {ca} ({e.strerror})") from None
    return ca


def _from_env(option: str, name: str, environ: Mapping[str, str]) -> Secret | None:
    if not name:
        return None
    value = environ.get(name, "")
    if not value:
        raise ConfigError(f"{option}: environment variable {name} is not set or empty")
    return Secret(value)
