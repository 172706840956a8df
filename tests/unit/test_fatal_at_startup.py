"""Start-up: misspelt options are named with the nearest known one; at start-up a configure
error is one log line and exit status 1, later it is an OptionsError as usual."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from mitm_oauth2.startup import fatal_at_startup
from mitm_oauth2.startup import unknown_options

KNOWN = ["oauth2_config", "oauth2_cache_dir", "oauth2_store", "listen_host", "confdir"]


@pytest.mark.parametrize(
    ("deferred", "expected"),
    [
        ([], None),
        (["web_columns", "ssl_insecure"], None),  # not ours: mitmproxy's or another addon's
        (
            ["oauth2_conifg"],
            "unknown option 'oauth2_conifg' (did you mean 'oauth2_config'?):"
            " no such option in mitmproxy or this addon",
        ),
        (
            ["oauth_store", "oauth2_zzz"],
            "unknown options 'oauth2_zzz', 'oauth_store' (did you mean 'oauth2_store'?):"
            " no such option in mitmproxy or this addon",
        ),
    ],
)
def test_unknown_options(deferred: list[str], expected: str | None) -> None:
    assert unknown_options(deferred, KNOWN) == expected


class Refuses:
    @fatal_at_startup
    def configure(self, updated: object) -> None:
        raise exceptions.OptionsError("b.toml: backend 'api': key 'x': unknown key")


def test_outside_start_up_the_error_is_raised_as_usual() -> None:
    # A test master: no ErrorCheck watching a start-up.
    with taddons.context(), pytest.raises(exceptions.OptionsError, match="key 'x'"):
        Refuses().configure(set())
