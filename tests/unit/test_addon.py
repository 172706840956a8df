"""The mitmproxy glue: options, matching flows, the bearer header and the 502 problem answer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import NamedTuple

import pytest
from mitmproxy import exceptions
from mitmproxy import flowfilter
from mitmproxy import http
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2 import addon as addon_module
from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.model.token import Token
from mitm_oauth2.store.guard import GuardedStore
from tests.unit.broker_fakes import BrokerStub
from tests.unit.broker_fakes import run_hook

SECRET = "s3cr3t-VALUE"
GOOD = f"""
[[backend]]
name = "api"
hosts = ["api.test", "*.svc.test:8443"]
token_url = "https://idp.test/oauth/token"
client_id = "proxy"
client_secret = "{SECRET}"
"""
# The https targets (host, port) GOOD's hosts take, and those they do not.
TAKEN = [("api.test", 443), ("API.test.", 443), ("a.b.svc.test", 8443)]
NOT_TAKEN = [
    ("other.test", 443),
    ("api.test", 8443),
    ("svc.test", 8443),
    ("a.svc.test", 443),
    ("api.test.evil", 443),
]


class StubBroker(BrokerStub):
    """Stands in for TokenBroker: hands out `token`, or raises `error`."""

    def __init__(self, store: GuardedStore, lock_lease: float = 15.0) -> None:
        self.store = store
        self.lock_lease = lock_lease
        self.token_value = Token("tok-abc", "Bearer", issued_at=0.0, lifetime=3600.0)
        self.error: TokenError | None = None
        self.grants: list = []
        self.closed = False

    async def token(self, grant) -> Token:
        self.grants.append(grant)
        if self.error is not None:
            raise self.error
        return self.token_value

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def brokers(monkeypatch: pytest.MonkeyPatch) -> list[StubBroker]:
    """Every broker the addon opens, in order; no disk cache, no network."""
    opened: list[StubBroker] = []

    def open_broker(store: GuardedStore, lock_lease: float) -> StubBroker:
        opened.append(StubBroker(store, lock_lease))
        return opened[-1]

    monkeypatch.setattr(addon_module, "open_broker", open_broker)
    return opened


def config_file(tmp_path: Path, text: str = GOOD) -> Path:
    path = tmp_path / "backends.toml"
    path.write_text(text, encoding="utf-8")
    return path


def flow(host: str = "api.test", port: int = 443, scheme: str = "https", **kwargs) -> http.HTTPFlow:
    request = tutils.treq(host=host, port=port, scheme=scheme.encode())
    request.headers["Authorization"] = "Basic Y2FsbGVyOm93bg=="
    return tflow.tflow(req=request, **kwargs)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (GOOD.replace("client_secret =", "client_secert ="), ["backend 'api'", "client_secert"]),
        (GOOD.replace('name = "api"\n', ""), ["backend #1", "'name'"]),
        (GOOD.replace("https://idp.test", "http://idp.test"), ["backend 'api'", "'token_url'"]),
        (GOOD + "[[backend\n", ["invalid TOML"]),
    ],
)
def test_bad_config_is_refused(tmp_path: Path, brokers, text: str, words: list[str]) -> None:
    addon = OAuth2Backend()
    path = config_file(tmp_path, text)
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError) as info:
            tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "c"))
        assert tctx.options.oauth2_config is None  # rolled back
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert SECRET not in message
    assert brokers == []


def test_missing_config_file_is_refused(tmp_path: Path, brokers) -> None:
    addon = OAuth2Backend()
    with (
        taddons.context(addon) as tctx,
        pytest.raises(exceptions.OptionsError, match=r"nope\.toml"),
    ):
        tctx.configure(addon, oauth2_config=str(tmp_path / "nope.toml"))


@pytest.mark.anyio
async def test_good_config_opens_a_private_cache_at_once(tmp_path: Path) -> None:
    """Opened in the background at start-up (not at the first request), so a broken cache is
    reported before traffic comes."""
    addon = OAuth2Backend()
    cache = tmp_path / "cache"
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=str(config_file(tmp_path)), oauth2_cache_dir=str(cache))
        assert addon.broker is not None
        assert addon.cache_dir == cache
        for _ in range(500):
            if (cache / "cache.db").exists():
                break
            await asyncio.sleep(0.01)
        assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
        backend = addon.router.match("api.test", 443, "https")
        assert backend is not None
        assert backend.name == "api"
        addon.done()
        assert addon.broker is None


def test_lock_lease_is_validated_and_reopens_the_cache(tmp_path: Path, brokers) -> None:
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=str(config_file(tmp_path)))
        with pytest.raises(exceptions.OptionsError, match="oauth2_lock_lease"):
            tctx.configure(addon, oauth2_lock_lease=0)
        assert len(brokers) == 1
        tctx.configure(addon, oauth2_lock_lease=5)
        assert (len(brokers), brokers[-1].lock_lease) == (2, 5.0)


def test_unusable_cache_dir_is_refused(tmp_path: Path) -> None:
    addon = OAuth2Backend()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with (
        taddons.context(addon) as tctx,
        pytest.raises(exceptions.OptionsError, match="oauth2_cache_dir"),
    ):
        tctx.configure(
            addon, oauth2_config=str(config_file(tmp_path)), oauth2_cache_dir=str(blocker)
        )


def test_default_cache_dir_is_in_confdir(tmp_path: Path, brokers) -> None:
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, confdir=str(tmp_path), oauth2_config=str(config_file(tmp_path)))
    assert [broker.store.where for broker in brokers] == [
        f"token cache {tmp_path / 'oauth2-token-cache'}"
    ]


def test_new_cache_dir_replaces_the_broker(tmp_path: Path, brokers) -> None:
    addon = OAuth2Backend()
    path = str(config_file(tmp_path))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=path, oauth2_cache_dir=str(tmp_path / "a"))
        tctx.configure(addon, oauth2_config=path, oauth2_cache_dir=str(tmp_path / "a"))
        assert len(brokers) == 1  # same directory: the cache stays open
        tctx.configure(addon, oauth2_cache_dir=str(tmp_path / "b"))
    assert [broker.store.where for broker in brokers] == [
        f"token cache {tmp_path / 'a'}",
        f"token cache {tmp_path / 'b'}",
    ]
    assert brokers[0].closed
    assert not brokers[1].closed


class Configured(NamedTuple):
    addon: OAuth2Backend
    tctx: taddons.context
    broker: StubBroker

    async def send(self, f: http.HTTPFlow) -> http.HTTPFlow:
        """`f` through the addon's hooks, as mitmproxy runs them for a request; `f` returned."""
        await self.tctx.cycle(self.addon, f)
        return f


@pytest.fixture
def configured(tmp_path: Path, brokers):
    """An addon configured with GOOD inside a mitmproxy test context, and its stub broker."""
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon,
            oauth2_config=str(config_file(tmp_path)),
            oauth2_cache_dir=str(tmp_path / "cache"),
        )
        yield Configured(addon, tctx, brokers[0])


@pytest.mark.anyio
@pytest.mark.parametrize(("host", "port"), TAKEN)
async def test_bearer_replaces_the_callers_authorization(configured, host, port) -> None:
    f = await configured.send(flow(host, port))
    broker = configured.broker
    assert f.request.headers.get_all("Authorization") == ["Bearer tok-abc"]
    assert f.response is None
    assert f.metadata["oauth2"] == {
        "backend": "api",
        "source": "cache",
        "token_age_s": 0.0,
        "token_left_s": 3600.0,
        "fingerprint": hashlib.sha256(b"tok-abc").hexdigest()[:12],
        "claims": "opaque",  # not a JWT (test_claims.py reads those)
        "header": "Authorization",  # where it went: what redaction replaces
    }
    assert f.comment == "cache · 3600 s left · api"
    assert "tok-abc" not in json.dumps(f.metadata)
    assert [grant.backend for grant in broker.grants] == ["api"]
    assert broker.grants[0].credentials.client_secret.reveal() == SECRET


@pytest.mark.anyio
async def test_plain_http_beyond_loopback_is_refused_before_any_token(configured) -> None:
    f = await configured.send(flow("api.test", 80, "http"))
    assert f.response is not None
    assert f.response.status_code == 403
    problem = json.loads(f.response.content or b"")
    assert problem["type"] == "urn:mitm-oauth2:problem:plain-http"
    assert "http://api.test:80 would carry it unencrypted" in problem["detail"]
    assert f.request.headers["Authorization"] == "Basic Y2FsbGVyOm93bg=="
    assert configured.broker.grants == []  # no token asked for, none sent


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("extra", "host"),
    [("allow_plain_http = true\n", "api.test"), ("", "127.0.0.1"), ("", "localhost")],
    ids=["allowed", "loopback ip", "localhost"],
)
async def test_plain_http_where_allowed_or_on_loopback_gets_the_token(
    tmp_path: Path, brokers, extra: str, host: str
) -> None:
    addon = OAuth2Backend()
    text = GOOD.replace('"*.svc.test:8443"', '"*.svc.test:8443", "127.0.0.1", "localhost"')
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=str(config_file(tmp_path, text + extra)))
        f = flow(host, 80, "http")
        await tctx.cycle(addon, f)
    assert f.response is None
    assert f.request.headers["Authorization"] == "Bearer tok-abc"


@pytest.mark.anyio
async def test_a_new_configuration_gets_new_answers_about_plain_http(
    tmp_path: Path, brokers
) -> None:
    """The answer for a request's destination is remembered, but never across configurations."""
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=str(config_file(tmp_path)))
        refused = flow("api.test", 80, "http")
        await tctx.cycle(addon, refused)
        tctx.configure(
            addon, oauth2_config=str(config_file(tmp_path, GOOD + "allow_plain_http = true\n"))
        )
        allowed = flow("api.test", 80, "http")
        await tctx.cycle(addon, allowed)
    assert refused.response is not None
    assert refused.response.status_code == 403
    assert allowed.response is None
    assert allowed.request.headers["Authorization"] == "Bearer tok-abc"


@pytest.mark.anyio
async def test_lowercase_caller_header_is_replaced_too(configured) -> None:
    f = flow()
    f.request.headers.add("authorization", "Bearer caller-own")
    await configured.send(f)
    assert f.request.headers.get_all("authorization") == ["Bearer tok-abc"]


@pytest.mark.anyio
@pytest.mark.parametrize(("host", "port"), NOT_TAKEN)
async def test_unconfigured_host_is_untouched(configured, host, port) -> None:
    f = await configured.send(flow(host, port))
    assert f.request.headers["Authorization"] == "Basic Y2FsbGVyOm93bg=="
    assert "oauth2" not in f.metadata
    assert configured.broker.grants == []


@pytest.mark.anyio
async def test_host_header_does_not_decide(configured) -> None:
    f = flow("other.test")
    f.request.headers["Host"] = "api.test"  # client-controlled; the proxy connects to other.test
    await configured.send(f)
    assert f.request.headers["Authorization"] == "Basic Y2FsbGVyOm93bg=="
    assert configured.broker.grants == []


@pytest.mark.anyio
async def test_token_error_answers_502_problem(configured) -> None:
    configured.broker.error = TokenError(
        "token endpoint answered HTTP 401 with error 'invalid_client'",
        oauth_error="invalid_client",
        status=401,
        description=f"bad secret {SECRET}",
    )
    f = await configured.send(flow())
    assert f.response is not None
    assert f.response.status_code == 502
    assert f.response.headers["Content-Type"] == "application/problem+json"
    document = json.loads(f.response.content)
    assert document["status"] == 502
    assert document["backend"] == "api"
    assert document["oauth_error"] == "invalid_client"
    assert "HTTP 401" in document["detail"]
    assert SECRET.encode() not in f.response.content
    assert f.metadata["oauth2"]["backend"] == "api"
    assert "invalid_client" in f.metadata["oauth2"]["error"]
    assert f.request.headers["Authorization"] == "Basic Y2FsbGVyOm93bg=="  # no token was added
    assert f.marked == ":default:"
    assert f.comment.startswith("refused · token endpoint answered HTTP 401")
    assert f.comment.endswith(" · api")
    assert SECRET not in f.comment
    assert flowfilter.match("~comment ^refused", f)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "make",
    [
        lambda: flow(resp=True),
        lambda: flow(err=True),
        lambda: flow(live=False),
    ],
    ids=["response already set", "error", "not live"],
)
async def test_finished_or_replayed_flows_are_left_alone(configured, make) -> None:
    addon, _, broker = configured
    f = make()
    response = f.response
    await run_hook(addon.requestheaders(f))
    assert f.request.headers["Authorization"] == "Basic Y2FsbGVyOm93bg=="
    assert f.response is response
    assert "oauth2" not in f.metadata
    assert broker.grants == []


@pytest.mark.anyio
async def test_bad_reconfigure_keeps_the_working_config(configured, tmp_path: Path) -> None:
    addon, tctx, _ = configured
    good = tctx.options.oauth2_config
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("client_id", "clientid"))
    with pytest.raises(exceptions.OptionsError, match="clientid"):
        tctx.configure(addon, oauth2_config=str(bad))
    assert tctx.options.oauth2_config == good
    f = await configured.send(flow())
    assert f.request.headers["Authorization"] == "Bearer tok-abc"


@pytest.mark.anyio
async def test_unset_config_touches_nothing(tmp_path: Path, brokers) -> None:
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_cache_dir=str(tmp_path / "cache"))
        f = flow()
        await tctx.cycle(addon, f)
    assert f.request.headers["Authorization"] == "Basic Y2FsbGVyOm93bg=="
    assert f.response is None


def test_script_file_exposes_the_addon() -> None:
    """`mitmdump -s addon/oauth2_backend.py` finds this addon in the script."""
    script = Path(__file__).parents[2] / "addon" / "oauth2_backend.py"
    with taddons.context() as tctx:
        module = tctx.script(str(script))  # the script module; its `addons` are what loads
    assert [type(addon) for addon in module.addons] == [OAuth2Backend]


@pytest.mark.parametrize(
    ("listen_host", "warns"),
    [("", True), ("0.0.0.0", True), ("192.0.2.7", True), ("127.0.0.1", False), ("::1", False)],
)
def test_warns_when_the_proxy_is_reachable_beyond_loopback(
    caplog: pytest.LogCaptureFixture, listen_host: str, warns: bool
) -> None:
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:
        caplog.clear()
        tctx.configure(addon, listen_host=listen_host)
    assert ("anyone who can connect to it" in caplog.text) is warns
