"""Phantom tokens through the addon: a client's own token request to a phantom backend's token
endpoint is answered here (never forwarded) with a phantom token that lives as long as the real
one has left; a request to the backend with it gets the real token instead; one without a
phantom token, with one the proxy did not issue, one for another backend or an expired one gets
401 and is not forwarded. Without phantom backends there is no request hook at all."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from mitmproxy import http
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2 import addon as addon_module
from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.model.token import fingerprint
from mitm_oauth2.phantom import PhantomGrant
from mitm_oauth2.tokens.broker import TokenBroker
from mitm_oauth2.tokens.phantoms import Phantoms
from tests.support.config_helpers import backend
from tests.support.config_helpers import refused
from tests.unit.broker_fakes import FakeClock
from tests.unit.broker_fakes import FakeEndpoint
from tests.unit.broker_fakes import MemoryStore
from tests.unit.broker_fakes import run_hook

pytestmark = pytest.mark.anyio

TABLE = """
[[backend]]
name = "{name}"
hosts = ["{host}"]
{where}
client_id = "proxy"
client_secret = "the-real-secret"
phantom = {phantom}
"""
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint() -> FakeEndpoint:
    return FakeEndpoint(expires_in=600)


class Discovery:
    """Finds `https://idp.test/<backend>/token` for an issuer (or fails, when told to)."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.failure: TokenError | None = None

    async def __call__(self, credentials: ClientCredentials) -> str:
        assert credentials.issuer is not None
        self.asked.append(credentials.issuer)
        if self.failure is not None:
            raise self.failure
        return credentials.issuer.replace("/issuer/", "/") + "/token"


@pytest.fixture
def discovery() -> Discovery:
    return Discovery()


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint, clock, discovery):
    """configure(*tables) -> addon, with a real broker on a fake endpoint and store."""
    broker = TokenBroker(endpoint, MemoryStore(), clock)
    monkeypatch.setattr(addon_module, "open_broker", lambda store, lock_lease: broker)
    addon = OAuth2Backend()
    addon.phantoms = PhantomGrant(Phantoms(clock), discover=discovery)
    with taddons.context(addon) as tctx:

        def configure(*tables: str) -> OAuth2Backend:
            path = tmp_path / "backends.toml"
            path.write_text("".join(tables), encoding="utf-8")
            tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "c"))
            return addon

        yield configure


def table(
    name: str = "crm", host: str = "crm.test", phantom: bool = True, issuer: bool = False
) -> str:
    where = f'token_url = "https://idp.test/{name}/token"'
    if issuer:
        where = f'issuer = "https://idp.test/issuer/{name}"'
    return TABLE.format(name=name, host=host, where=where, phantom="true" if phantom else "false")


def token_request(name: str = "crm", **form: str) -> http.HTTPFlow:
    request = tutils.treq(
        host="idp.test", port=443, scheme=b"https", method=b"POST", path=f"/{name}/token".encode()
    )
    request.headers["Authorization"] = "Basic ZHVtbXk6ZHVtbXk="  # the SDK's dummy credentials
    request.headers["Content-Type"] = "application/x-www-form-urlencoded"
    request.content = urlencode(form or {"grant_type": "client_credentials"}).encode()
    return tflow.tflow(req=request)


def backend_request(host: str = "crm.test", token: str | None = None) -> http.HTTPFlow:
    request = tutils.treq(host=host, port=443, scheme=b"https", path=b"/accounts")
    if token is not None:
        request.headers["Authorization"] = f"Bearer {token}"
    return tflow.tflow(req=request)


async def through(addon: OAuth2Backend, f: http.HTTPFlow) -> http.HTTPFlow:
    """requestheaders, then (the form read) request, as mitmproxy calls them."""
    await run_hook(addon.requestheaders(f))
    if f.response is None and "request" in vars(addon):
        await run_hook(addon.request(f))  # type: ignore[attr-defined]
    return f


async def phantom_token(addon: OAuth2Backend, **form: str) -> dict[str, object]:
    f = await through(addon, token_request(**form))
    assert f.response is not None
    assert f.response.status_code == 200, f.response.text
    document: dict[str, object] = json.loads(f.response.content or b"")
    return document


async def test_a_clients_token_request_is_answered_with_a_phantom(proxy, endpoint) -> None:
    addon = proxy(table())
    for form in ({"grant_type": "client_credentials"}, {"grant_type": JWT_BEARER}):
        answer = await phantom_token(addon, **form, assertion="a.dummy.jwt")
        assert str(answer["access_token"]).startswith("phantom.")
        assert answer["access_token"] != "tok-1"
        assert answer["token_type"] == "Bearer"
        assert 590 <= int(str(answer["expires_in"])) <= 600  # the real token's life left
    assert endpoint.calls == 1  # the real token, asked for once with the proxy's own secret


@pytest.mark.parametrize("host", ["IDP.test", "idp.test."])
async def test_the_token_endpoints_host_is_compared_as_the_router_compares_hosts(
    proxy, host
) -> None:
    addon = proxy(table())
    f = token_request()
    f.request.host = host
    await through(addon, f)
    assert f.response is not None  # answered here: never forwarded with the SDK's credentials
    assert json.loads(f.response.content or b"")["access_token"].startswith("phantom.")


async def test_the_phantom_is_swapped_for_the_real_token(proxy) -> None:
    addon = proxy(table())
    phantom = str((await phantom_token(addon))["access_token"])
    f = await through(addon, backend_request(token=phantom))
    assert f.response is None
    assert f.request.headers["Authorization"] == "Bearer tok-1"


async def test_other_grants_get_the_token_endpoints_kind_of_error(proxy, endpoint) -> None:
    addon = proxy(table())
    f = await through(addon, token_request(grant_type="password", username="u", password="p"))
    assert f.response is not None
    assert f.response.status_code == 400
    assert json.loads(f.response.content or b"")["error"] == "unsupported_grant_type"
    assert endpoint.calls == 0


@pytest.mark.parametrize("kind", ["none", "unknown", "other-backend", "expired"])
async def test_no_valid_phantom_no_real_token(proxy, clock, kind: str) -> None:
    addon = proxy(table(), table("erp", "erp.test"))
    token = {
        "none": None,
        "unknown": "phantom.made-up",
        "other-backend": str((await phantom_token(addon))["access_token"]),  # crm's
        "expired": str((await phantom_token(addon, name="erp"))["access_token"]),
    }[kind]
    if kind == "expired":
        clock.advance(601)
    f = await through(addon, backend_request("erp.test", token))
    assert f.response is not None
    assert f.response.status_code == 401
    assert f.response.headers["Content-Type"] == "application/problem+json"
    assert "tok-" not in f.request.headers.get("Authorization", "")
    assert "tok-" not in (f.response.text or "")
    if token is not None:  # and the flow keeps no copy of the client's phantom
        assert f.request.headers["Authorization"] == f"Bearer [redacted {fingerprint(token)}]"


async def test_a_phantom_sent_twice_is_refused_not_swapped(proxy) -> None:
    addon = proxy(table())
    phantom = str((await phantom_token(addon))["access_token"])
    f = backend_request(token=phantom)
    f.request.headers.add("Authorization", f"Bearer {phantom}")
    await through(addon, f)
    assert f.response is not None
    assert f.response.status_code == 401
    assert "2 Authorization headers" in (f.response.text or "")
    assert "tok-" not in str(f.request.headers.get_all("Authorization"))


async def test_without_phantom_backends_there_is_no_request_hook(proxy) -> None:
    addon = proxy(table())
    assert "request" in vars(addon)
    proxy(table(phantom=False))
    assert "request" not in vars(addon)
    f = await through(addon, token_request())
    assert f.response is None  # an ordinary request to the authorization server: it passes


async def test_the_servers_metadata_passes_untouched(proxy) -> None:
    addon = proxy(table())
    request = tutils.treq(
        host="idp.test", port=443, scheme=b"https", path=b"/.well-known/openid-configuration"
    )
    f = await through(addon, tflow.tflow(req=request))
    assert f.response is None
    assert "oauth2" not in f.metadata


async def test_with_discovery_the_issuers_host_waits_for_the_token_endpoint(
    proxy, discovery
) -> None:
    addon = proxy(table(issuer=True))
    metadata = tutils.treq(
        host="idp.test",
        port=443,
        scheme=b"https",
        path=b"/issuer/crm/.well-known/openid-configuration",
    )
    f = await through(addon, tflow.tflow(req=metadata))
    assert f.response is None  # the client's own metadata request passes
    assert discovery.asked == ["https://idp.test/issuer/crm"]
    answer = await phantom_token(addon)  # POST https://idp.test/crm/token, as discovered
    assert str(answer["access_token"]).startswith("phantom.")
    assert discovery.asked == ["https://idp.test/issuer/crm"]  # once


async def test_no_token_endpoint_known_no_request_to_the_issuer(proxy, discovery) -> None:
    discovery.failure = TokenError("metadata of issuer https://idp.test/issuer/crm: HTTP 503")
    addon = proxy(table(issuer=True))
    f = await through(addon, token_request())
    assert f.response is not None
    assert f.response.status_code == 502  # were it the token request, its credentials stay here
    discovery.failure = None
    assert str((await phantom_token(addon))["access_token"]).startswith("phantom.")


def test_phantom_is_not_for_token_exchange(tmp_path: Path) -> None:
    message = refused(tmp_path, backend(grant="token_exchange", phantom=True))
    assert "key 'phantom': not with grant = \"token_exchange\"" in message
