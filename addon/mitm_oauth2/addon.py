"""The mitmproxy addon: matches flows to backends and puts a bearer token on them.

This is glue only: options and hooks. Tokens come from the broker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Set
from pathlib import Path

from mitmproxy import addonmanager
from mitmproxy import ctx
from mitmproxy import exceptions
from mitmproxy import http

from .broker import TokenBroker
from .config import BackendConfig
from .config import ConfigError
from .config import load_config
from .hosts import HostRouter
from .problem import CONTENT_TYPE
from .problem import token_unavailable
from .tokens import TokenError

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = "oauth2-token-cache"
# Loader.add_option is annotated `type`, but mitmproxy's option parser takes this union.
OPTIONAL_STR: type = str | None  # type: ignore[assignment]


class OAuth2Backend:
    """Injects `Authorization: Bearer <token>` into requests to configured OAuth2 backends."""

    def __init__(self) -> None:
        self.router: HostRouter[BackendConfig] = HostRouter()
        self.broker: TokenBroker | None = None
        self.cache_dir: Path | None = None

    def load(self, loader: addonmanager.Loader) -> None:
        loader.add_option(
            "oauth2_config",
            OPTIONAL_STR,
            None,
            """
            Path of the TOML file of [[backend]] tables: which hosts are OAuth2-protected
            backends, and how to get their tokens (client-credentials grant).
            """,
        )
        loader.add_option(
            "oauth2_cache_dir",
            OPTIONAL_STR,
            None,
            f"""
            Directory of the persistent token cache (created 0700).
            Default: {CACHE_DIR_NAME} inside mitmproxy's confdir.
            """,
        )

    def configure(self, updated: Set[str]) -> None:
        if not {"oauth2_config", "oauth2_cache_dir", "confdir"} & updated:
            return
        if ctx.options.oauth2_config is None:
            self.router = HostRouter()
            logger.warning("oauth2_config is not set: no backend gets tokens")
            return
        try:
            config = load_config(os.path.expanduser(ctx.options.oauth2_config))
            router = HostRouter(
                (host, backend) for backend in config.backends for host in backend.hosts
            )
        except (ConfigError, ValueError) as e:
            raise exceptions.OptionsError(str(e)) from e
        self._open_cache(self._cache_dir())
        self.router = router
        names = ", ".join(backend.name for backend in config.backends)
        logger.info("oauth2: %d backend(s) from %s: %s", len(config.backends), config.path, names)

    def _cache_dir(self) -> Path:
        if ctx.options.oauth2_cache_dir:
            return Path(ctx.options.oauth2_cache_dir).expanduser()
        return Path(ctx.options.confdir).expanduser() / CACHE_DIR_NAME

    def _open_cache(self, cache_dir: Path) -> None:
        if self.broker is not None and cache_dir == self.cache_dir:
            return
        try:
            broker = TokenBroker.on_disk(cache_dir)
        except Exception as e:
            raise exceptions.OptionsError(
                f"oauth2_cache_dir: cannot open token cache {cache_dir} ({e})"
            ) from e
        if self.broker is not None:
            self.broker.close()
        self.broker, self.cache_dir = broker, cache_dir

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or self.broker is None:
            return
        request = flow.request
        backend = self.router.match(request.host, request.port, request.scheme)
        if backend is None:
            return
        flow.metadata["oauth2"] = {"backend": backend.name}
        try:
            token = await self.broker.token(backend.grant)
        except TokenError as e:
            self._refuse(flow, backend, e)
            return
        request.headers["Authorization"] = f"{token.token_type} {token.access_token}"

    @staticmethod
    def _refuse(flow: http.HTTPFlow, backend: BackendConfig, error: TokenError) -> None:
        problem = token_unavailable(backend.name, error)
        # A streamed body would go upstream before our answer; buffer it so nothing is forwarded.
        flow.request.stream = False
        flow.response = http.Response.make(
            problem.status, problem.to_json(), {"Content-Type": CONTENT_TYPE}
        )
        flow.metadata["oauth2"]["error"] = error.cause

    def done(self) -> None:
        if self.broker is not None:
            self.broker.close()
            self.broker = None
