"""Which token store to open, from the `oauth2_store*` options: checked before anything opens."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import urlsplit

from ..model.clock import Clock
from ..model.credentials import Secret
from ..model.errors import ConfigError
from .codec import MIN_KEY_CHARS
from .codec import TokenCodec
from .disk import DiskTokenStore
from .guard import GuardedStore
from .redis import RedisTokenStore

REDIS_SCHEMES = ("redis", "rediss")


@dataclass(frozen=True)
class StoreSettings:
    """Where tokens live: a Redis URL (without password), or None for the disk cache."""

    cache_dir: Path
    redis_url: str | None = None
    redis_password: Secret | None = field(default=None, repr=False)
    key: Secret | None = field(default=None, repr=False)
    timeout: float = 0.5
    ca_file: Path | None = None

    @property
    def where(self) -> str:
        if self.redis_url is None:
            return f"token cache {self.cache_dir}"
        parts = urlsplit(self.redis_url)
        return f"token store {parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"

    def open(self, clock: Clock | None = None) -> GuardedStore:
        """The store, guarded; nothing is connected or read until the first call."""
        codec = TokenCodec(self.key.reveal() if self.key else None)
        redis_url = self.redis_url
        if redis_url is None:
            directory = self.cache_dir
            guard = GuardedStore(
                lambda: DiskTokenStore.open(directory, codec), self.where, self.timeout, clock=clock
            )
        else:
            password = self.redis_password.reveal() if self.redis_password else None
            redis = RedisTokenStore.from_url(
                redis_url, self.where, password, self.timeout, codec, self.ca_file
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
    timeout_ms: int,
    ca_file: str = "",
    environ: Mapping[str, str] = os.environ,
) -> StoreSettings:
    """Validates the options; raises ConfigError naming the option at fault."""
    if not 1 <= timeout_ms <= 60_000:
        raise ConfigError("oauth2_store_timeout: must be 1 to 60000 milliseconds")
    redis_url = _redis_url(store.strip()) if store.strip() else None
    if password_env and redis_url is None:
        raise ConfigError("oauth2_store_password_env: only for a redis:// store")
    password = _from_env("oauth2_store_password_env", password_env, environ)
    key = _from_env("oauth2_store_key_env", key_env, environ)
    if key is not None and len(key.reveal()) < MIN_KEY_CHARS:
        raise ConfigError(
            f"oauth2_store_key_env: {key_env} must hold at least {MIN_KEY_CHARS} characters "
            "(e.g. `openssl rand -base64 32`)"
        )
    ca = _ca_file(ca_file, redis_url)
    return StoreSettings(cache_dir, redis_url, password, key, timeout_ms / 1000, ca)


def _ca_file(path: str, redis_url: str | None) -> Path | None:
    if not path:
        return None
    if redis_url is None or not redis_url.startswith("rediss://"):
        raise ConfigError("oauth2_store_ca: only for a rediss:// store")
    ca = Path(path).expanduser()
    try:
        ca.read_bytes()
    except OSError as e:
        raise ConfigError(f"oauth2_store_ca: cannot read {ca} ({e.strerror})") from None
    return ca


def _redis_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsed to reject a bad port now, not at the first token)
    except ValueError as e:
        raise ConfigError(f"oauth2_store: not a valid URL ({e})") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            "oauth2_store: must be empty (the disk cache) or a redis:// or rediss:// URL"
        )
    if parts.password is not None:
        # Option values show in mitmweb and in logs; the password must not.
        raise ConfigError(
            "oauth2_store: no password in the URL; name an environment variable holding it "
            "with oauth2_store_password_env"
        )
    if not parts.hostname:
        raise ConfigError("oauth2_store: the URL names no host")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ConfigError(f"oauth2_store: database must be a number, not {db!r}")
    return url


def _from_env(option: str, name: str, environ: Mapping[str, str]) -> Secret | None:
    if not name:
        return None
    value = environ.get(name, "")
    if not value:
        raise ConfigError(f"{option}: environment variable {name} is not set or empty")
    return Secret(value)
