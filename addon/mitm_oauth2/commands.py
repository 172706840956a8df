"""The addon's commands, for mitmweb's command bar and the console: `oauth.status`,
`oauth.refresh [name ...]`, `oauth.purge [name ...]` (no name: every backend) and
`oauth.suggest`.

Named with lower-case letters and dots only: mitmweb routes `/commands/[a-z.]+`, so a name with a
digit (`oauth2.status`) works in the console but cannot be reached from mitmweb's command bar."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from mitmproxy import command
from mitmproxy import exceptions

from .config.backend import BackendConfig
from .learning import Learning
from .model.background import in_background
from .model.credentials import TokenGrant
from .tokens.broker import TokenBroker
from .tokens.status import BackendStatus


class Running(Protocol):
    """What the commands need from the running addon."""

    broker: TokenBroker | None
    backends: tuple[BackendConfig, ...]
    learning: Learning

    def statuses(self) -> list[tuple[str, BackendStatus]]: ...

    def grants(self, backend: BackendConfig) -> list[TokenGrant]: ...


class OAuth2Commands:
    def __init__(self, addon: Running) -> None:
        self._addon = addon

    @command.command("oauth.status")
    def status(self) -> str:
        """Per backend, as JSON: where its token is ("memory", "store" or "none"), its age and
        time left, whether it is being renewed, fetches, cache hits, replays after a 401,
        failures by cause, last error, and the token store with whether it works (store_ok)."""
        report = {name: status.to_json() for name, status in self._addon.statuses()}
        return json.dumps(report, indent=2, sort_keys=True)

    @command.command("oauth.refresh")
    def refresh(self, *names: str) -> None:
        """Renew the tokens of the named backends now (every backend when none is named). A
        token_exchange backend's tokens are its callers': forgotten, as by oauth.purge, each
        exchanged again at its caller's next request."""
        broker = self._broker()
        for backend in self._chosen(names):
            if backend.subject_header is None:
                broker.refresh(backend.grant)
            else:  # renewing every caller's token at once would flood the server
                self._purge(broker, backend)

    @command.command("oauth.purge")
    def purge(self, *names: str) -> None:
        """Forget the tokens of the named backends, in memory and in the cache (all when none
        is named; a token_exchange backend's: those of the callers this proxy knows); their
        next request fetches a new one."""
        broker = self._broker()
        for backend in self._chosen(names):
            self._purge(broker, backend)

    def _purge(self, broker: TokenBroker, backend: BackendConfig) -> None:
        for grant in self._addon.grants(backend):
            in_background(broker.purge(grant))

    @command.command("oauth.suggest")
    def suggest(self) -> str:
        """The [[backend]] tables learned from hosts that answered 401 naming their OAuth
        metadata (RFC 9728), as TOML to paste into the configuration (with the client's id and
        secret in the environment variables it names)."""
        tables = self._addon.learning.suggestions()
        return tables or "# no backend learned yet: none answered 401 naming resource_metadata\n"

    def _broker(self) -> TokenBroker:
        if self._addon.broker is None:
            raise exceptions.CommandError("oauth2: no configuration loaded (set oauth2_config)")
        return self._addon.broker

    def _chosen(self, names: Sequence[str]) -> list[BackendConfig]:
        known = {backend.name: backend for backend in self._addon.backends}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise exceptions.CommandError(f"oauth2: no backend named {', '.join(unknown)}")
        return [known[name] for name in names] if names else list(known.values())
