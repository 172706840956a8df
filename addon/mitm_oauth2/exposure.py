"""A warning when the proxy listens beyond loopback: whoever reaches it uses the backends with
its tokens (a nested addon of OAuth2Backend)."""

from __future__ import annotations

import logging
from collections.abc import Set

from mitmproxy import ctx

from .model.net import is_loopback

logger = logging.getLogger(__name__)


class ExposureWarning:
    def configure(self, updated: Set[str]) -> None:
        if "listen_host" not in updated:
            return
        listen_host = ctx.options.listen_host
        if listen_host and is_loopback(listen_host):
            return
        where = listen_host or "every interface"
        logger.warning(
            "oauth2: the proxy listens on %s: anyone who can connect to it uses the backends with "
            "its tokens; use --listen-host 127.0.0.1 unless that is intended",
            where,
        )
