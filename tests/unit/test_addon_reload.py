"""Configuration changes in the addon: option updates (mitmproxy's rollback) and file edits swap the
whole state or none of it, and a changed grant never gets another grant's token."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import SubjectToken
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.token import TokenResponse
from mitm_oauth2.store.disk import DiskTokenStore
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import key_for
from tests.unit.broker_fakes import with_credentials

pytestmark = pytest.mark.anyio


def toml(host: str = "api.test", secret: str = "s3cr3t-one") -> str:
    return (
        "[[backend]]\n"
        'name = "api"\n'
        f'hosts = ["{host}"]\n'
        'token_url = "https://idp.test/token"\n'
        'client_id = "proxy"\n'
        f'client_secret = "{secret}"\n'
    )


def replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@pytest.fixture
def setup(tmp_path: Path):
    """An addon configured from backends.toml with a real on-disk broker, inside mitmproxy's
    test context: (addon, tctx, path)."""
    addon = OAuth2Backend()
    path = tmp_path / "backends.toml"
    path.write_text(toml())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "cache"))
        yield addon, tctx, path
        addon.done()


def routes(addon: OAuth2Backend, host: str) -> bool:
    return addon.router.match(host, 443, "https") is not None


async def test_file_edit_swaps_the_router_and_keeps_the_broker(setup) -> None:
    addon, _, path = setup
    broker = addon.broker
    replace(path, toml(host="new.test"))
    assert await addon.watcher.check_once() is True
    assert routes(addon, "new.test")
    assert not routes(addon, "api.test")
    assert addon.broker is broker


async def test_broken_edit_keeps_routing(setup, caplog: pytest.LogCaptureFixture) -> None:
    addon, tctx, path = setup
    replace(path, toml(host="new.test").replace("hosts", "host"))
    assert await addon.watcher.check_once() is False
    assert routes(addon, "api.test")
    assert "key 'host': unknown key" in caplog.text
    # Setting the option to the same, still broken file: the last good configuration stays.
    tctx.configure(addon, oauth2_config=str(path))
    assert routes(addon, "api.test")


def test_refused_option_update_leaves_everything_and_is_not_reread(
    setup, tmp_path: Path, addon_log: pytest.LogCaptureFixture
) -> None:
    addon, tctx, path = setup
    broker, router = addon.broker, addon.router
    bad = tmp_path / "bad.toml"
    bad.write_text(toml(host="bad.test").replace("client_id", "clientid"))
    with pytest.raises(exceptions.OptionsError, match="clientid"):
        tctx.configure(addon, oauth2_config=str(bad))
    assert tctx.options.oauth2_config == str(path)
    assert (addon.broker, addon.router) == (broker, router)
    assert addon.watcher.is_current(path)
    # mitmproxy's rollback ran configure again with the old values: nothing was re-read
    assert "backend(s) from" not in addon_log.text


async def test_refused_cache_dir_keeps_the_old_config_followed(setup, tmp_path: Path) -> None:
    """A good new file with an unusable cache directory: neither is taken, the old file stays
    watched."""
    addon, tctx, path = setup
    broker = addon.broker
    other = tmp_path / "other.toml"
    other.write_text(toml(host="other.test"))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    with pytest.raises(exceptions.OptionsError, match="oauth2_cache_dir"):
        tctx.configure(addon, oauth2_config=str(other), oauth2_cache_dir=str(blocker))
    assert addon.broker is broker
    assert not routes(addon, "other.test")
    replace(other, toml(host="other2.test"))
    assert await addon.watcher.check_once() is False  # not followed
    replace(path, toml(host="edited.test"))
    assert await addon.watcher.check_once() is True
    assert routes(addon, "edited.test")


async def test_new_file_by_option_is_followed(setup, tmp_path: Path) -> None:
    addon, tctx, path = setup
    other = tmp_path / "other.toml"
    other.write_text(toml(host="other.test"))
    tctx.configure(addon, oauth2_config=str(other))
    assert routes(addon, "other.test")
    replace(path, toml(host="old-file.test"))
    replace(other, toml(host="other2.test"))
    assert await addon.watcher.check_once() is True
    assert routes(addon, "other2.test")
    assert not routes(addon, "old-file.test")


async def test_unset_option_stops_following(setup) -> None:
    addon, tctx, path = setup
    tctx.configure(addon, oauth2_config=None)
    replace(path, toml(host="new.test"))
    assert await addon.watcher.check_once() is False
    assert not routes(addon, "new.test")


async def test_running_starts_and_done_cancels_the_watcher(setup) -> None:
    addon, _, _ = setup

    def watchers() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == "oauth2-config-watcher"]

    addon.running()
    (task,) = watchers()
    addon.done()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled()
    assert watchers() == []


async def test_running_freezes_what_start_up_loaded_once_per_process(setup, monkeypatch) -> None:
    addon, _, _ = setup
    gc.unfreeze()  # what an earlier test in this process froze
    collected: list[object] = []
    monkeypatch.setattr(gc, "collect", lambda: collected.append("full") or 0)
    addon.running()
    assert gc.get_freeze_count() > 0
    assert collected == ["full"]  # start-up's garbage freed first, not frozen with the rest
    addon.done()
    addon.running()  # a hot reload of the script: the same process, nothing to do again
    assert collected == ["full"]
    addon.done()


GRANT = TokenGrant(
    "api",
    ClientCredentials(
        token_url="https://idp.test/token",
        client_id="proxy",
        client_secret=Secret("s3cr3t-one"),
        scopes=("read",),
        auth_method=AuthMethod.CLIENT_SECRET_BASIC,
    ),
    max_token_age=3600.0,
)
CHANGES = {
    "token_url": {"token_url": "https://idp2.test/token"},
    "client_id": {"client_id": "proxy2"},
    "secret": {"client_secret": Secret("s3cr3t-two")},
    "scope": {"scopes": ("read", "write")},
    "auth_method": {"auth_method": AuthMethod.CLIENT_SECRET_POST},
    "assertion_file": {
        "auth_method": AuthMethod.CLIENT_ASSERTION,
        "client_secret": None,
        "assertion_file": "/var/run/secrets/tokens/idp",
    },
}


def changed(field: str) -> TokenGrant:
    return with_credentials(GRANT, **CHANGES[field])


@pytest.mark.parametrize("field", CHANGES)
def test_cache_key_covers_every_credential(field: str) -> None:
    assert key_for(changed(field)) != key_for(GRANT)


class CountingEndpoint:
    def __init__(self) -> None:
        self.asked: list[ClientCredentials] = []

    async def request_token(
        self, credentials: ClientCredentials, subject: SubjectToken | None = None
    ) -> TokenResponse:
        self.asked.append(credentials)
        return TokenResponse(f"tok-{len(self.asked)}", "Bearer", 3600, None)

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("field", CHANGES)
async def test_changed_credentials_never_reuse_a_token(tmp_path: Path, field: str) -> None:
    endpoint = CountingEndpoint()
    broker = TokenBroker(endpoint, DiskTokenStore.open_sync(tmp_path / "cache"))
    try:
        first = await broker.token(GRANT)
        second = await broker.token(changed(field))
        assert second.access_token != first.access_token
        assert endpoint.asked == [GRANT.credentials, changed(field).credentials]
        # back to the first credentials: their token is still good and is reused
        assert (await broker.token(GRANT)).access_token == first.access_token
        assert len(endpoint.asked) == 2
    finally:
        broker.close()
