"""The grants that act as a user, through the addon: a refused refresh token answers 502 with a
problem saying a person must sign in again, nothing is forwarded and `oauth.status` shows it; the
password grant is warned about once, at start-up or when a reload brings it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2 import addon as addon_module
from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.model.errors import SignInRequired
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import FakeClock
from tests.unit.broker_fakes import FakeEndpoint
from tests.unit.broker_fakes import MemoryStore
from tests.unit.broker_fakes import run_hook

pytestmark = pytest.mark.anyio

REFRESH = """
[[backend]]
name = "mail"
hosts = ["mail.test"]
token_url = "https://idp.test/oauth/token"
client_id = "proxy"
client_secret = "s3cr3t"
grant = "refresh_token"
refresh_token_file = "user.rt"
"""
PASSWORD = """
[[backend]]
name = "legacy"
hosts = ["legacy.test"]
token_url = "https://idp.test/oauth/token"
client_id = "proxy"
client_secret = "s3cr3t"
grant = "password"
username = "alice"
password_file = "user.pw"
"""


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: FakeEndpoint):
    """configure(text) -> addon, running with a real broker on a fake endpoint and store."""
    (tmp_path / "user.rt").write_text("rt-of-alice\n", encoding="utf-8")
    (tmp_path / "user.pw").write_text("alice-password\n", encoding="utf-8")
    broker = TokenBroker(endpoint, MemoryStore(), FakeClock())
    monkeypatch.setattr(addon_module, "open_broker", lambda store, lock_lease: broker)
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:

        def configure(text: str) -> OAuth2Backend:
            path = tmp_path / "backends.toml"
            path.write_text(text, encoding="utf-8")
            tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "c"))
            return addon

        yield configure


def request_to(host: str) -> http.HTTPFlow:
    return tflow.tflow(req=tutils.treq(host=host, port=443, scheme=b"https", path=b"/inbox"))


async def test_a_refused_refresh_token_asks_for_a_sign_in_and_forwards_nothing(
    proxy, endpoint: FakeEndpoint
) -> None:
    addon = proxy(REFRESH)
    endpoint.failure = SignInRequired(
        "token endpoint answered HTTP 400 with error 'invalid_grant' (the refresh token was "
        "refused: revoked, expired or used twice; a person must sign in again and give the "
        "proxy the new refresh token)",
        oauth_error="invalid_grant",
        status=400,
    )
    flows = [request_to("mail.test") for _ in range(3)]
    for f in flows:
        await run_hook(addon.requestheaders(f))
    assert endpoint.calls == 1  # one refusal; the others are answered from it
    for f in flows:
        assert f.response is not None
        assert f.response.status_code == 502
        document = json.loads(f.response.content or b"")
        assert "a person must sign in again" in document["detail"]
        assert document["oauth_error"] == "invalid_grant"
        assert "rt-of-alice" not in f.response.text
    ((name, status),) = addon.statuses()
    assert (name, status.to_json()["sign_in_required"]) == ("mail", True)


async def test_the_password_grant_is_warned_about_once(
    proxy, addon_log: pytest.LogCaptureFixture
) -> None:
    proxy(PASSWORD)
    proxy(PASSWORD + "\n# a reload that keeps it\n")
    proxy(PASSWORD.replace("alice", "bob"))  # still the same backend
    warned = [
        r.getMessage()
        for r in addon_log.records
        if r.levelno == logging.WARNING and "RFC 9700" in r.getMessage()
    ]
    assert warned == [
        'backend legacy: grant = "password" gives the proxy a user\'s password, which RFC 9700 '
        "§2.4 says must not be done: keep it to legacy backends and test users"
    ]
    assert "alice-password" not in addon_log.text
