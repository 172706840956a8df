"""Discovery of the token endpoint from an issuer: RFC 8414 metadata, then OpenID discovery; the
issuer check, mTLS aliases (RFC 8705 §5), the error naming each URL, and the metadata cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trustme

from mitm_oauth2.client.discovery import METADATA_TTL
from mitm_oauth2.client.discovery import Discovery
from mitm_oauth2.client.discovery import metadata_urls
from mitm_oauth2.client.token_client import TokenClient
from mitm_oauth2.model.credentials import AssertionAudience
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import TlsIdentity
from mitm_oauth2.model.credentials import TokenTransport
from mitm_oauth2.model.errors import TokenError
from tests.unit.broker_fakes import FakeClock
from tests.unit.client_helpers import GOOD
from tests.unit.client_helpers import SECRET
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import form

pytestmark = pytest.mark.anyio

ISSUER = "https://as.test/tenant1"
RFC8414 = "https://as.test/.well-known/oauth-authorization-server/tenant1"
OPENID = "https://as.test/tenant1/.well-known/openid-configuration"
ENDPOINT = "https://as.test/tenant1/token"
MTLS_ENDPOINT = "https://mtls.as.test/tenant1/token"


def metadata(issuer: str = ISSUER, **fields: Any) -> dict[str, Any]:
    return {"issuer": issuer, "token_endpoint": ENDPOINT, **fields}


def serve(documents: dict[str, Any]) -> Recorder:
    """GET of a URL in `documents` answers its JSON (or the httpx.Response given); others 404.
    A POST answers a good token response."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json=GOOD)
        found = documents.get(str(request.url))
        if isinstance(found, httpx.Response):
            return found
        return httpx.Response(404) if found is None else httpx.Response(200, json=found)

    return Recorder(answer)


async def discover(handler: Recorder, issuer: str = ISSUER, *, mtls: bool = False, **kw) -> str:
    discovery = kw.pop("discovery", None) or Discovery()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return await discovery.token_endpoint(http, issuer, mtls=mtls)


def urls(handler: Recorder) -> list[str]:
    return [str(request.url) for request in handler.requests]


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        (
            "https://as.test",
            [
                "https://as.test/.well-known/oauth-authorization-server",
                "https://as.test/.well-known/openid-configuration",
            ],
        ),
        ("https://as.test/tenant1", [RFC8414, OPENID]),
        ("https://as.test/tenant1/", [RFC8414, OPENID]),
        (
            "https://as.test:8443/realms/a",
            [
                "https://as.test:8443/.well-known/oauth-authorization-server/realms/a",
                "https://as.test:8443/realms/a/.well-known/openid-configuration",
            ],
        ),
    ],
)
def test_metadata_urls(issuer: str, expected: list[str]) -> None:
    assert metadata_urls(issuer) == expected


async def test_rfc8414_metadata_comes_first() -> None:
    handler = serve({RFC8414: metadata(), OPENID: metadata(token_endpoint="https://wrong.test/t")})
    assert await discover(handler) == ENDPOINT
    assert urls(handler) == [RFC8414]
    (request,) = handler.requests
    assert request.method == "GET"
    assert request.headers["accept"] == "application/json"


async def test_issuer_without_a_path() -> None:
    handler = serve(
        {"https://as.test/.well-known/oauth-authorization-server": metadata("https://as.test")}
    )
    assert await discover(handler, "https://as.test") == ENDPOINT


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(404),
        httpx.Response(500, json={"error": "oops"}),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
    ],
    ids=["404", "500", "not json", "not an object"],
)
async def test_falls_back_to_openid_configuration(first: httpx.Response) -> None:
    handler = serve({RFC8414: first, OPENID: metadata()})
    assert await discover(handler) == ENDPOINT
    assert urls(handler) == [RFC8414, OPENID]


async def test_error_names_every_url_tried() -> None:
    handler = serve({OPENID: httpx.Response(503)})
    with pytest.raises(TokenError) as info:
        await discover(handler)
    cause = info.value.cause
    assert f"{RFC8414}: HTTP 404" in cause
    assert f"{OPENID}: HTTP 503" in cause
    assert cause.startswith("discovery failed")


async def test_transport_error_is_named() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TokenError) as info:
        await discover(Recorder(refuse))
    assert f"{RFC8414}: request failed (ConnectError)" in info.value.cause
    assert f"{OPENID}: request failed (ConnectError)" in info.value.cause


@pytest.mark.parametrize(
    "named",
    ["https://evil.test/tenant1", "https://as.test/tenant2", "https://as.test/tenant1/", None],
)
async def test_issuer_mismatch_is_refused(named: str | None) -> None:
    handler = serve({RFC8414: metadata(named), OPENID: metadata(named)})
    with pytest.raises(TokenError) as info:
        await discover(handler)
    assert f"{RFC8414}: names issuer" in info.value.cause
    assert f"{OPENID}: names issuer" in info.value.cause
    assert f"not '{ISSUER}'" in info.value.cause


async def test_mismatched_rfc8414_document_is_not_used() -> None:
    evil = metadata("https://evil.test", token_endpoint="https://evil.test/token")
    handler = serve({RFC8414: evil, OPENID: metadata()})
    assert await discover(handler) == ENDPOINT


@pytest.mark.parametrize(
    "endpoint", [None, 42, "", "ftp://as.test/token", "/tenant1/token"], ids=repr
)
async def test_unusable_token_endpoint(endpoint: Any) -> None:
    handler = serve({RFC8414: metadata(token_endpoint=endpoint)})
    with pytest.raises(TokenError, match="no usable token_endpoint") as info:
        await discover(handler)
    assert ISSUER in info.value.cause


async def test_plain_http_endpoint_from_metadata_is_refused() -> None:
    handler = serve({RFC8414: metadata(token_endpoint="http://as.test/tenant1/token")})
    with pytest.raises(TokenError):
        await discover(handler)


ALIASES = {"mtls_endpoint_aliases": {"token_endpoint": MTLS_ENDPOINT}}


@pytest.mark.parametrize(
    ("document", "mtls", "expected"),
    [
        (metadata(**ALIASES), False, ENDPOINT),
        (metadata(**ALIASES), True, MTLS_ENDPOINT),
        (metadata(), True, ENDPOINT),
        (metadata(mtls_endpoint_aliases={"revocation_endpoint": MTLS_ENDPOINT}), True, ENDPOINT),
        (metadata(mtls_endpoint_aliases=[MTLS_ENDPOINT]), True, ENDPOINT),
    ],
    ids=["no mtls", "mtls alias", "mtls without aliases", "alias for another endpoint", "junk"],
)
async def test_mtls_alias_only_for_mtls(document, mtls: bool, expected: str) -> None:
    assert await discover(serve({RFC8414: document}), mtls=mtls) == expected


async def test_metadata_is_cached_until_the_ttl() -> None:
    clock = FakeClock()
    discovery = Discovery(clock=clock)
    handler = serve({RFC8414: metadata(**ALIASES)})
    assert await discover(handler, discovery=discovery) == ENDPOINT
    assert await discover(handler, discovery=discovery, mtls=True) == MTLS_ENDPOINT
    clock.advance(METADATA_TTL - 1)
    assert await discover(handler, discovery=discovery) == ENDPOINT
    assert urls(handler) == [RFC8414]  # one fetch served all three
    handler.answer = serve({RFC8414: metadata(token_endpoint=MTLS_ENDPOINT)}).answer
    clock.advance(1)
    assert await discover(handler, discovery=discovery) == MTLS_ENDPOINT
    assert urls(handler) == [RFC8414, RFC8414]


async def test_cache_is_per_issuer_and_failures_are_not_cached() -> None:
    discovery = Discovery(clock=FakeClock())
    other = "https://as.test/tenant2"
    handler = serve({RFC8414: metadata()})
    with pytest.raises(TokenError):
        await discover(handler, other, discovery=discovery)
    assert await discover(handler, discovery=discovery) == ENDPOINT
    with pytest.raises(TokenError):
        await discover(handler, other, discovery=discovery)
    assert len(handler.requests) == 2 + 1 + 2  # tenant2 asked again: nothing was cached for it


# --- the token request with `issuer` set ---


async def request(handler: Recorder, credentials: ClientCredentials, times: int = 1) -> None:
    client = TokenClient(transport=httpx.MockTransport(handler))
    try:
        for _ in range(times):
            await client.request_token(credentials)
    finally:
        await client.aclose()


def by_issuer(**fields: Any) -> ClientCredentials:
    fields.setdefault("client_secret", Secret(SECRET))
    return ClientCredentials(client_id="my client", issuer=ISSUER, **fields)


async def test_token_request_posts_to_the_discovered_endpoint() -> None:
    handler = serve({RFC8414: metadata()})
    await request(handler, by_issuer(), times=2)
    methods = [(request.method, str(request.url)) for request in handler.requests]
    assert methods == [("GET", RFC8414), ("POST", ENDPOINT), ("POST", ENDPOINT)]
    assert "authorization" not in handler.requests[0].headers  # no credentials to metadata
    assert handler.requests[1].headers["authorization"].startswith("Basic ")


async def test_discovery_failure_makes_no_token_request() -> None:
    handler = serve({})
    with pytest.raises(TokenError, match="discovery failed"):
        await request(handler, by_issuer())
    assert [request.method for request in handler.requests] == ["GET", "GET"]


@pytest.mark.parametrize(
    ("audience", "expected"),
    [(AssertionAudience.TOKEN_ENDPOINT, ENDPOINT), (AssertionAudience.ISSUER, ISSUER)],
)
async def test_client_secret_jwt_with_discovery(audience, expected: str) -> None:
    handler = serve({RFC8414: metadata()})
    creds = by_issuer(auth_method=AuthMethod.CLIENT_SECRET_JWT, assertion_audience=audience)
    await request(handler, creds)
    assertion = form(handler.requests[-1])["client_assertion"][0]
    claims = jwt.decode(assertion, SECRET.encode(), algorithms=["HS256"], audience=expected)
    assert claims["aud"] == expected


async def test_tls_client_auth_posts_to_the_mtls_alias(tmp_path: Path) -> None:
    issued = trustme.CA().issue_cert("my-client.test")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    identity = TlsIdentity(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    creds = by_issuer(
        auth_method=AuthMethod.TLS_CLIENT_AUTH,
        client_secret=None,
        transport=TokenTransport(client_cert=identity),
    )
    handler = serve({RFC8414: metadata(**ALIASES)})
    await request(handler, creds)
    assert str(handler.requests[-1].url) == MTLS_ENDPOINT
    # A secret method at the same issuer keeps to the plain endpoint.
    await request(handler, by_issuer())
    assert str(handler.requests[-1].url) == ENDPOINT
