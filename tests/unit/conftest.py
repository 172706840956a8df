"""Shared fixtures for the unit tests: the anyio backend, the addon's log, a ready-made grant, the
broker tests' fakes (broker_fakes.py), the config watcher tests' recorder (watch_helpers.py), and
the addon wired to a stub broker and a fake client playback (replay_fakes.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import taddons

from mitm_oauth2 import addon as addon_module
from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.config.watch import ConfigWatcher
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.credentials import TokenTransport
from mitm_oauth2.replay import Replays
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import FakeClock
from tests.unit.broker_fakes import FakeEndpoint
from tests.unit.broker_fakes import MemoryStore
from tests.unit.broker_fakes import run_hook
from tests.unit.replay_fakes import Playback
from tests.unit.replay_fakes import StubBroker
from tests.unit.watch_helpers import Recorder
from tests.unit.watch_helpers import toml

# RFC 6749 §2.3.1 test secret: every character the seed recipe's raw base64 gets wrong.
SECRET = "p@ss:w+rd/%=é"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def addon_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog, keeping the addon's records (logger mitm_oauth2) from INFO up."""
    caplog.set_level(logging.INFO, logger="mitm_oauth2")
    return caplog


def _make_grant(
    *,
    backend: str = "api",
    token_url: str = "https://idp.test/oauth/token",
    client_id: str = "my client",
    secret: str = SECRET,
    scopes: tuple[str, ...] = ("read", "write"),
    auth_method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC,
    max_token_age: float = 3600.0,
    token_timeout: float = 10.0,
    **fields: Any,
) -> TokenGrant:
    """A grant; `fields` sets any other ClientCredentials field (audience, resources, ...)."""
    credentials = ClientCredentials(
        token_url=token_url,
        client_id=client_id,
        client_secret=Secret(secret),
        scopes=scopes,
        auth_method=auth_method,
        transport=TokenTransport(timeout=token_timeout),
        **fields,
    )
    return TokenGrant(backend, credentials, max_token_age)


@pytest.fixture
def make_grant():
    """Factory for a TokenGrant; keyword arguments override one field each."""
    return _make_grant


# --- the broker tests ---


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint() -> FakeEndpoint:
    return FakeEndpoint()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def broker(endpoint, store, clock) -> TokenBroker:
    return TokenBroker(endpoint, store, clock)


# --- the config watcher tests ---


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def following(tmp_path: Path, recorder: Recorder) -> tuple[ConfigWatcher, Path]:
    """A watcher following a good backends.toml, as configure() leaves it."""
    path = tmp_path / "backends.toml"
    path.write_text(toml(), encoding="utf-8")
    watcher = ConfigWatcher(recorder, environ={})
    watcher.follow(watcher.load(path))
    return watcher, path


# --- the addon on a configuration of one backend, api.test (the 401 and learning tests) ---

WIRED_CONFIG = """
[[backend]]
name = "api"
hosts = ["api.test"]
token_url = "https://idp.test/oauth/token"
client_id = "proxy"
client_secret = "s3cr3t"
{extra}
"""


@pytest.fixture
def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """An addon configured for api.test with a stub broker, and a fake client playback that
    runs each copy through the addon's hooks the way the proxy would."""
    broker = StubBroker()
    monkeypatch.setattr(addon_module, "open_broker", lambda store, lock_lease: broker)
    extra = getattr(request, "param", "")
    path = tmp_path / "backends.toml"
    path.write_text(WIRED_CONFIG.format(extra=extra), encoding="utf-8")
    addon = OAuth2Backend()
    playback = Playback()
    addon.replays = Replays(start=playback, timeout=5)

    async def through_the_proxy(replay: http.HTTPFlow, outcome: http.Response | str) -> None:
        await run_hook(addon.requestheaders(replay))
        if isinstance(outcome, str):
            replay.error = mflow.Error(outcome)
            addon.error(replay)
        else:
            replay.response = outcome
            await run_hook(addon.response(replay))

    playback.finish = through_the_proxy
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "c"))
        yield addon, broker, playback
