"""The JWT-bearer grant (RFC 7523 §2.1) on the wire: the assertion signed for each request as
Google documents it for service accounts, or from the assertion_* settings; no client
authentication unless configured; a refused grant says what to check; an echoed assertion is
scrubbed."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import BearerAssertion
from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import GrantType
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import SigningKey
from mitm_oauth2.model.credentials import TokenGrant
from tests.unit.broker_fakes import FakeClock
from tests.unit.client_helpers import GOOD
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import ask
from tests.unit.client_helpers import echoing
from tests.unit.client_helpers import form
from tests.unit.client_helpers import json_answer
from tests.unit.client_helpers import refused

pytestmark = pytest.mark.anyio

TOKEN_URL = "https://idp.test/oauth/token"
URN = "urn:ietf:params:oauth:grant-type:jwt-bearer"
KEY = rsa.generate_private_key(65537, 2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def bearer_grant(bearer: BearerAssertion, **fields: Any) -> TokenGrant:
    fields.setdefault("auth_method", AuthMethod.NONE)
    credentials = ClientCredentials(
        client_id=fields.pop("client_id", ""),
        token_url=TOKEN_URL,
        grant=GrantType.JWT_BEARER,
        bearer=bearer,
        **fields,
    )
    return TokenGrant("api", credentials, 3600.0)


def google(subject: str | None = None) -> BearerAssertion:
    key = SigningKey("/sa.json", Secret(PEM), "RS256", "0123abcd")
    return BearerAssertion(key, "sa@p.iam.gserviceaccount.com", subject, TOKEN_URL, 3600, True)


def generic(audience: str | None = None) -> BearerAssertion:
    key = SigningKey("/key.pem", Secret(PEM), "RS256", None)
    return BearerAssertion(key, "consumer-key", "ana@example.com", audience, 60)


def claims_of(assertion: str, audience: str) -> dict[str, Any]:
    """Verified but for time: the injected clock made it, and iat and exp are checked here."""
    times = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    return jwt.decode(
        assertion, KEY.public_key(), algorithms=["RS256"], audience=audience, options=times
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_a_service_account_assertion_as_google_documents_it(clock: FakeClock) -> None:
    handler = Recorder(json_answer(200, GOOD))
    scopes = ("https://www.googleapis.com/auth/cloud-platform", "openid")
    await ask(handler, bearer_grant(google(), scopes=scopes), clock=clock)
    (request,) = handler.requests
    sent = form(request)
    assert set(sent) == {"grant_type", "assertion"}  # the scope is a claim, not a parameter
    assert sent["grant_type"] == [URN]
    assert "authorization" not in request.headers
    (assertion,) = sent["assertion"]
    assert jwt.get_unverified_header(assertion)["kid"] == "0123abcd"
    claims = claims_of(assertion, TOKEN_URL)
    assert claims["iss"] == "sa@p.iam.gserviceaccount.com"
    assert "sub" not in claims
    assert claims["scope"] == " ".join(scopes)
    assert claims["iat"] == int(clock.wall())
    assert claims["exp"] - claims["iat"] == 3600


async def test_delegation_names_the_user(clock: FakeClock) -> None:
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, bearer_grant(google("ana@example.com")), clock=clock)
    (assertion,) = form(handler.requests[0])["assertion"]
    assert claims_of(assertion, TOKEN_URL)["sub"] == "ana@example.com"


@pytest.mark.parametrize(
    ("audience", "expected"),
    [(None, TOKEN_URL), ("https://login.salesforce.com", "https://login.salesforce.com")],
)
async def test_a_generic_assertion(clock: FakeClock, audience: str | None, expected: str) -> None:
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, bearer_grant(generic(audience), scopes=("api",)), clock=clock)
    (request,) = handler.requests
    sent = form(request)
    assert sent["scope"] == ["api"]  # as a parameter (RFC 7523 §2.1)
    claims = claims_of(sent["assertion"][0], expected)
    assert (claims["iss"], claims["sub"]) == ("consumer-key", "ana@example.com")
    assert claims["exp"] - claims["iat"] == 60
    assert "kid" not in jwt.get_unverified_header(sent["assertion"][0])  # no key_id set


async def test_a_fresh_assertion_for_every_request(clock: FakeClock) -> None:
    handler = Recorder(json_answer(200, GOOD))
    for _ in range(2):
        await ask(handler, bearer_grant(generic()), clock=clock)
        clock.advance(30)
    first, second = (claims_of(form(r)["assertion"][0], TOKEN_URL) for r in handler.requests)
    assert first["jti"] != second["jti"]
    assert second["iat"] - first["iat"] == 30


async def test_client_authentication_when_configured(clock: FakeClock) -> None:
    handler = Recorder(json_answer(200, GOOD))
    grant = bearer_grant(
        generic(),
        client_id="app",
        auth_method=AuthMethod.CLIENT_SECRET_POST,
        client_secret=Secret("s3cr3t"),
    )
    await ask(handler, grant, clock=clock)
    sent = form(handler.requests[0])
    assert sent["client_id"] == ["app"]
    assert sent["client_secret"] == ["s3cr3t"]
    assert sent["grant_type"] == [URN]


async def test_a_refused_grant_says_what_to_check(clock: FakeClock) -> None:
    echo = echoing(400, "invalid_grant", "assertion", says="bad signature on ")
    error = await refused(echo, bearer_grant(generic()), clock=clock)
    assert error.description == "bad signature on [redacted]"
    assert "assertion_issuer" in error.cause
    assert "service_account_file" in error.cause


async def test_unsupported_grant_names_this_grant(clock: FakeClock) -> None:
    answer = json_answer(400, {"error": "unsupported_grant_type"})
    error = await refused(answer, bearer_grant(generic()), clock=clock)
    assert "JWT-bearer grant" in error.cause
