"""The `oauth2_store*` options: declared with OAuth2Backend's own (`declare`), which opens its
store from them (`settings`)."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import addonmanager
from mitmproxy import ctx
from mitmproxy import exceptions

from .model.errors import ConfigError
from .store.settings import StoreSettings
from .store.settings import store_settings

NAMES = (
    "oauth2_store",
    "oauth2_store_password_env",
    "oauth2_store_sentinel_password_env",
    "oauth2_store_ca",
    "oauth2_store_key_env",
    "oauth2_store_timeout",
)


def declare(loader: addonmanager.Loader) -> None:
    loader.add_option(
        "oauth2_store",
        str,
        "",
        """
        Where tokens are kept and shared: empty for the disk cache (oauth2_cache_dir, shared
        by the processes of one machine), or a Redis to share one token per credential across
        a fleet of proxies: redis://host:port/db, redis+sentinel://host:port,host:port/SERVICE/db
        or redis+cluster://host:port,host:port (rediss... for TLS). Valkey alike.
        """,
    )
    loader.add_option(
        "oauth2_store_password_env",
        str,
        "",
        "Name of the environment variable holding the Redis password (never in the URL).",
    )
    loader.add_option(
        "oauth2_store_sentinel_password_env",
        str,
        "",
        """
        redis+sentinel:// only: name of the environment variable holding the Sentinels' own
        password (default: the Sentinels are asked without one).
        """,
    )
    loader.add_option(
        "oauth2_store_ca",
        str,
        "",
        "CA bundle (PEM) that a rediss:// store's certificate must chain to (default: the "
        "system's roots).",
    )
    loader.add_option(
        "oauth2_store_key_env",
        str,
        "",
        """
        Name of an environment variable holding a key (16+ characters) that encrypts tokens
        at rest in the store (AES-GCM); every proxy sharing the store needs the same key.
        """,
    )
    loader.add_option(
        "oauth2_store_timeout",
        int,
        500,
        """
        Milliseconds any one store call may take; past it, or when the store fails, tokens
        are kept in this process until the store answers again.
        """,
    )


def settings(cache_dir: Path) -> StoreSettings:
    """The store the options name; raises OptionsError naming the option at fault."""
    if cache_dir.exists() and not cache_dir.is_dir():
        raise exceptions.OptionsError(
            f"oauth2_cache_dir: cannot open token cache {cache_dir} (not a directory)"
        )
    try:
        return store_settings(
            store=ctx.options.oauth2_store,
            cache_dir=cache_dir,
            password_env=ctx.options.oauth2_store_password_env,
            sentinel_password_env=ctx.options.oauth2_store_sentinel_password_env,
            key_env=ctx.options.oauth2_store_key_env,
            timeout_ms=ctx.options.oauth2_store_timeout,
            ca_file=ctx.options.oauth2_store_ca,
        )
    except ConfigError as e:
        raise exceptions.OptionsError(str(e)) from None
