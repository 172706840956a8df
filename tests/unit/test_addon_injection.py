"""Injection through the addon: `header` and `header_format` per backend, every copy of the
caller's header replaced, and one host carrying several APIs by `path_prefix`."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import addonmanager
from mitmproxy import http
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2 import addon as addon_module
from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.model.token import Token
from tests.unit.broker_fakes import BrokerStub
from tests.unit.broker_fakes import run_hook

pytestmark = pytest.mark.anyio

CALLER = "Basic Y2FsbGVyOm93bg=="


def table(name: str, **extra: str) -> str:
    lines = [
        "[[backend]]",
        f'name = "{name}"',
        'hosts = ["api.test"]',
        'token_url = "https://idp.test/oauth/token"',
        f'client_id = "{name}-client"',
        'client_secret = "s3cr3t"',
    ]
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    return "\n".join(lines) + "\n"


class StubBroker(BrokerStub):
    """Hands out a token per backend (`tok-<backend>`) and records which grants asked."""

    def __init__(self) -> None:
        self.grants: list = []

    async def token(self, grant) -> Token:
        self.grants.append(grant)
        return Token(f"tok-{grant.backend}", "Bearer", issued_at=0.0, lifetime=3600.0)


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """configure(text) -> (addon, tctx, broker): the addon running on a config of that text."""
    broker = StubBroker()
    monkeypatch.setattr(addon_module, "open_broker", lambda store, lock_lease: broker)
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:

        def configure(text: str):
            path = tmp_path / "backends.toml"
            path.write_text(text, encoding="utf-8")
            tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "c"))
            return addon, tctx, broker

        yield configure


def flow(path: str = "/", *headers: tuple[str, str]) -> http.HTTPFlow:
    request = tutils.treq(host="api.test", port=443, scheme=b"https", path=path.encode())
    request.headers["Authorization"] = CALLER
    for name, value in headers:
        request.headers.add(name, value)
    return tflow.tflow(req=request)


async def test_api_key_header_leaves_authorization_alone(proxy) -> None:
    addon, tctx, _ = proxy(table("api", header="X-Api-Key", header_format="{token}"))
    f = flow("/", ("X-Api-Key", "caller-key"), ("x-api-key", "second"))
    await tctx.cycle(addon, f)
    assert f.request.headers.get_all("X-Api-Key") == ["tok-api"]
    assert f.request.headers.get_all("Authorization") == [CALLER]
    assert f.response is None


async def test_header_format_around_the_token(proxy) -> None:
    addon, tctx, _ = proxy(table("api", header_format="Token {token}; v=1"))
    f = flow()
    await tctx.cycle(addon, f)
    assert f.request.headers.get_all("Authorization") == ["Token tok-api; v=1"]


async def test_default_replaces_every_authorization_header(proxy) -> None:
    addon, tctx, _ = proxy(table("api"))
    f = flow("/", ("authorization", "Bearer caller-own"), ("AUTHORIZATION", "Digest x"))
    assert len(f.request.headers.get_all("Authorization")) == 3
    await tctx.cycle(addon, f)
    assert f.request.headers.get_all("Authorization") == ["Bearer tok-api"]


async def test_token_is_inserted_literally(proxy) -> None:
    addon, tctx, broker = proxy(table("api", header_format="{token}"))
    broker.token = _fixed("a{token}b")
    f = flow()
    await tctx.cycle(addon, f)
    assert f.request.headers["Authorization"] == "a{token}b"


def _fixed(value: str):
    async def token(grant) -> Token:
        return Token(value, "Bearer", issued_at=0.0, lifetime=3600.0)

    return token


@pytest.mark.parametrize(
    ("path", "backend"),
    [
        ("/v1/users", "v1"),
        ("/v1", "v1"),
        ("/v1x", "rest"),
        ("/v2/orders?page=2", "v2"),
        ("/v2/../v1/users", "v1"),
        ("/v1?redirect=/v2", "v1"),
        ("/", "rest"),
        ("/health", "rest"),
    ],
)
async def test_path_prefix_picks_the_backend(proxy, path: str, backend: str) -> None:
    text = table("v1", path_prefix="/v1") + table("v2", path_prefix="/v2") + table("rest")
    addon, tctx, broker = proxy(text)
    f = flow(path)
    await tctx.cycle(addon, f)
    assert f.request.headers["Authorization"] == f"Bearer tok-{backend}"
    assert f.metadata["oauth2"]["backend"] == backend
    assert [grant.backend for grant in broker.grants] == [backend]
    assert broker.grants[0].credentials.client_id == f"{backend}-client"


async def test_unmatched_path_is_untouched(proxy) -> None:
    addon, tctx, broker = proxy(table("v1", path_prefix="/v1"))
    f = flow("/v2/x")
    await tctx.cycle(addon, f)
    assert f.request.headers.get_all("Authorization") == [CALLER]
    assert "oauth2" not in f.metadata
    assert broker.grants == []


async def test_header_per_backend_on_one_host(proxy) -> None:
    text = table("keyed", path_prefix="/keyed", header="X-Api-Key", header_format="{token}")
    addon, tctx, _ = proxy(text + table("bearer"))
    keyed, bearer = flow("/keyed/a"), flow("/b")
    await tctx.cycle(addon, keyed)
    await tctx.cycle(addon, bearer)
    assert (keyed.request.headers["X-Api-Key"], keyed.request.headers["Authorization"]) == (
        "tok-keyed",
        CALLER,
    )
    assert "X-Api-Key" not in bearer.request.headers
    assert bearer.request.headers["Authorization"] == "Bearer tok-bearer"


async def test_unexpected_token_failure_fails_closed(proxy) -> None:
    addon, _, broker = proxy(table("api"))

    async def broken(grant) -> Token:
        raise RuntimeError("boom")

    broker.token = broken
    f = flow()
    with addonmanager.safecall():  # how mitmproxy runs a hook: log the exception, go on
        await run_hook(addon.requestheaders(f))
    assert f.request.headers.get_all("Authorization") == [CALLER]  # forwarded as the caller sent
    assert f.response is not None
    assert f.response.status_code == 502
