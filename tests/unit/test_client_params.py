"""The token request's parameters (scope list, audience, repeated resource, extra_params) and
headers as sent, and the token call's own transport: one pool per TokenTransport, its CA, timeout
and proxy, TLS verification always on."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from mitm_oauth2.client import token_client as client_module
from mitm_oauth2.client.token_client import TokenClient
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import TokenTransport
from mitm_oauth2.model.errors import TokenError
from tests.unit.broker_fakes import with_credentials
from tests.unit.client_helpers import GOOD
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import ask
from tests.unit.client_helpers import form
from tests.unit.client_helpers import json_answer

pytestmark = pytest.mark.anyio


async def sent(make_grant, **fields: Any) -> httpx.Request:
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, make_grant(**fields))
    (request,) = handler.requests
    return request


async def test_every_parameter_is_sent(make_grant) -> None:
    request = await sent(
        make_grant,
        scopes=("read", "write", "admin"),
        audience="https://api.test",
        resources=("https://api.test/v1", "https://api.test/v2"),
        extra_params=(("prompt", ""), ("tenant", "a b&c=d")),
    )
    assert form(request) == {
        "grant_type": ["client_credentials"],
        "scope": ["read write admin"],
        "audience": ["https://api.test"],
        "resource": ["https://api.test/v1", "https://api.test/v2"],  # RFC 8707: repeated
        "prompt": [""],
        "tenant": ["a b&c=d"],
    }


async def test_parameters_are_sent_with_secret_post(make_grant) -> None:
    request = await sent(
        make_grant,
        auth_method=AuthMethod.CLIENT_SECRET_POST,
        audience="aud",
        resources=("urn:r",),
        extra_params=(("tenant", "t1"),),
    )
    sent_form = form(request)
    assert (sent_form["audience"], sent_form["resource"], sent_form["tenant"]) == (
        ["aud"],
        ["urn:r"],
        ["t1"],
    )
    assert sent_form["client_id"] == ["my client"]


async def test_unset_parameters_are_not_sent(make_grant) -> None:
    request = await sent(make_grant, scopes=(), audience=None, resources=())
    assert form(request) == {"grant_type": ["client_credentials"]}


async def test_single_resource_is_one_parameter(make_grant) -> None:
    request = await sent(make_grant, resources=("https://api.test",))
    assert form(request)["resource"] == ["https://api.test"]


async def test_token_headers_are_sent(make_grant) -> None:
    request = await sent(
        make_grant, token_headers=(("X-Tenant", "t1"), ("User-Agent", "proxy/1.0"))
    )
    assert request.headers["x-tenant"] == "t1"
    assert request.headers.get_list("user-agent") == ["proxy/1.0"]
    assert request.headers["authorization"].startswith("Basic ")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_our_accept_and_authorization_win_over_token_headers(make_grant) -> None:
    request = await sent(
        make_grant, token_headers=(("Accept", "text/html"), ("Authorization", "Bearer x"))
    )
    assert request.headers.get_list("accept") == ["application/json"]
    assert request.headers.get_list("authorization") != ["Bearer x"]


# --- the token call's transport ---


class Spy:
    """Records the keyword arguments of every httpx.AsyncClient the TokenClient makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[dict[str, Any]] = []
        real = httpx.AsyncClient

        def make(**kwargs: Any) -> httpx.AsyncClient:
            self.made.append(kwargs)
            return real(**kwargs)

        monkeypatch.setattr(client_module.httpx, "AsyncClient", make)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    return Spy(monkeypatch)


def over(make_grant, transport: TokenTransport):
    return with_credentials(make_grant(), transport=transport)


async def tokens(make_grant, transports: list[TokenTransport]) -> Recorder:
    handler = Recorder(json_answer(200, GOOD))
    client = TokenClient(transport=httpx.MockTransport(handler))
    try:
        for transport in transports:
            await client.request_token(over(make_grant, transport).credentials)
    finally:
        await client.aclose()
    return handler


async def test_one_pool_per_transport(make_grant, spy: Spy) -> None:
    first, second = TokenTransport(timeout=10.0), TokenTransport(timeout=3.0)
    handler = await tokens(make_grant, [first, second, TokenTransport(timeout=10.0), second])
    assert len(handler.requests) == 4
    assert [made["timeout"] for made in spy.made] == [10.0, 3.0]


async def test_pool_settings(make_grant, spy: Spy) -> None:
    await tokens(make_grant, [TokenTransport(timeout=2.5)])
    (made,) = spy.made
    assert made["timeout"] == 2.5
    assert made["proxy"] is None
    assert made["trust_env"] is False  # never loop through HTTP(S)_PROXY, i.e. the proxy itself
    assert made["follow_redirects"] is False
    context = made["verify"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


async def test_private_ca_bundle_is_the_trust_store(make_grant, spy: Spy, tmp_path: Path) -> None:
    ca = trustme.CA(organization_name="Private Test CA")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    await tokens(make_grant, [TokenTransport(ca_bundle=str(tmp_path / "ca.pem"))])
    context = spy.made[0]["verify"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    subjects = [dict(item[0] for item in cert["subject"]) for cert in context.get_ca_certs()]
    assert [subject.get("organizationName") for subject in subjects] == ["Private Test CA"]


async def test_proxy_is_given_to_the_pool(spy: Spy) -> None:
    client = TokenClient()
    client._pool(TokenTransport(proxy="http://proxy.test:3128"))
    await client.aclose()
    assert spy.made[0]["proxy"] == "http://proxy.test:3128"
    assert spy.made[0]["verify"].verify_mode is ssl.CERT_REQUIRED


async def test_timeout_error_names_the_transports_timeout(make_grant) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(TokenError, match=r"timed out after 2\.5 s"):
        await ask(slow, make_grant(token_timeout=2.5))


async def test_unusable_ca_bundle_is_a_token_error(make_grant, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    transport = TokenTransport(ca_bundle=str(tmp_path / "ca.pem"))
    with pytest.raises(TokenError):
        await ask(json_answer(200, GOOD), over(make_grant, transport))


async def test_non_ascii_token_header_is_a_token_error(make_grant) -> None:
    with pytest.raises(TokenError):
        await ask(json_answer(200, GOOD), make_grant(token_headers=(("X-Tenant", "é"),)))
