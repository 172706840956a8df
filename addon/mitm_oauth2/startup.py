"""Start-up: a bad option or configuration stops mitmdump or mitmweb with one line that says what
to change, before the proxy listens; a proxy that listens beyond loopback is warned about.

mitmproxy loads a `-s` script after its first start-up check, logs an error from its configure
hook with a traceback, and exits only once the proxy listens. While mitmproxy's ErrorCheck still
watches (that is, during start-up, when any error ends the process anyway), our configure hooks
log the error as one line and exit at once. Later updates raise OptionsError as usual.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Set
from typing import TypeVar

from mitmproxy import ctx
from mitmproxy import exceptions

from .config.table import did_you_mean
from .model.net import is_loopback

logger = logging.getLogger(__name__)

# Prefixes of the options this addon declares, and of names a user may mistake for them.
PREFIXES = ("oauth2_", "oauth_")

A = TypeVar("A")
Configure = Callable[[A, Set[str]], None]


def starting_up() -> bool:
    """Whether mitmproxy is starting and would exit on an error logged now (see ErrorCheck)."""
    checker = ctx.master.addons.get("errorcheck")  # type: ignore[no-untyped-call]
    return checker is not None and checker.logger in logging.getLogger().handlers


def fatal_at_startup(configure: Configure[A]) -> Configure[A]:
    """Wraps a configure hook: at start-up its OptionsError is one log line and exit status 1."""

    @functools.wraps(configure)
    def checked(addon: A, updated: Set[str]) -> None:
        try:
            configure(addon, updated)
        except exceptions.OptionsError as e:
            if not starting_up():
                raise
            logger.error("%s", e)
            raise SystemExit(1) from None

    return checked


def unknown_options(deferred: Iterable[str], known: Iterable[str]) -> str | None:
    """The options given (`--set`, config.yaml) that look like ours but that nothing declares,
    each with the nearest known name; None when there are none."""
    ours = sorted(name for name in known if name.startswith(PREFIXES))
    unknown = sorted(name for name in deferred if name.startswith(PREFIXES))
    if not unknown:
        return None
    listed = ", ".join(f"'{name}'{did_you_mean(name, ours)}" for name in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown option{plural} {listed}: no such option in mitmproxy or this addon"


def warn_if_exposed(updated: Set[str]) -> None:
    """Whoever reaches a proxy that listens beyond loopback uses the backends with its tokens."""
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
