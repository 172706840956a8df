"""Client authentication at the token endpoint: Basic (form and raw), post, JWT client assertions
(RFC 7523, decoded here with PyJWT) and tls_client_auth (RFC 8705); one method per request."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from mitm_oauth2.client.auth import ASSERTION_LIFETIME
from mitm_oauth2.client.auth import JWT_BEARER
from mitm_oauth2.client.auth import authenticate
from mitm_oauth2.client.auth import basic_credentials
from mitm_oauth2.model.credentials import AssertionAudience
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import BasicEncoding
from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import SigningKey
from mitm_oauth2.model.credentials import TlsIdentity
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.credentials import TokenTransport
from mitm_oauth2.model.errors import TokenError
from tests.support.key_material import private_pem
from tests.unit.client_helpers import GOOD
from tests.unit.client_helpers import SECRET
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import ask
from tests.unit.client_helpers import echoing
from tests.unit.client_helpers import form
from tests.unit.client_helpers import json_answer
from tests.unit.client_helpers import refused

TOKEN_URL = "https://idp.test/oauth/token"
ISSUER = "https://idp.test"
CLIENT_ID = "my client"
RAW_VECTOR = "Basic bXkgY2xpZW50OnBAc3M6dytyZC8lPcOp"  # base64("my client:p@ss:w+rd/%=é")
FORM_VECTOR = "Basic bXkrY2xpZW50OnAlNDBzcyUzQXclMkJyZCUyRiUyNSUzRCVDMyVBOQ=="

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    """A private key per algorithm: RSA for RS256 and PS256, P-256 for ES256."""
    rsa_key = rsa.generate_private_key(65537, 2048)
    return {"RS256": rsa_key, "PS256": rsa_key, "ES256": ec.generate_private_key(ec.SECP256R1())}


def credentials(method: AuthMethod, **fields: Any) -> ClientCredentials:
    fields.setdefault("token_url", TOKEN_URL)
    if method.uses_secret:
        fields.setdefault("client_secret", Secret(SECRET))
    return ClientCredentials(client_id=CLIENT_ID, auth_method=method, **fields)


def signed(key: Any, algorithm: str, key_id: str | None = None, **fields: Any) -> ClientCredentials:
    signing_key = SigningKey(
        "/keys/client.pem", Secret(private_pem(key).decode("ascii")), algorithm, key_id
    )
    return credentials(AuthMethod.PRIVATE_KEY_JWT, signing_key=signing_key, **fields)


def grant(creds: ClientCredentials) -> TokenGrant:
    return TokenGrant("api", creds, 3600.0)


def decode(assertion: str, key: Any, algorithm: str, audience: str) -> dict[str, Any]:
    return jwt.decode(assertion, key, algorithms=[algorithm], audience=audience)


# --- private_key_jwt and client_secret_jwt ---


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256"])
def test_private_key_jwt_assertion(keys, algorithm: str) -> None:
    key = keys[algorithm]
    before = int(time.time())
    auth = authenticate(signed(key, algorithm), TOKEN_URL, now=time.time())
    assertion = auth.form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == algorithm
    assert "kid" not in header
    claims = decode(assertion, key.public_key(), algorithm, TOKEN_URL)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == TOKEN_URL
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == ASSERTION_LIFETIME == 60
    assert claims["jti"]


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_assertion_does_not_verify_with_another_key(keys, algorithm: str) -> None:
    assertion = authenticate(signed(keys[algorithm], algorithm), TOKEN_URL, now=time.time()).form[
        "client_assertion"
    ]
    other = (
        rsa.generate_private_key(65537, 2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    with pytest.raises(jwt.InvalidSignatureError):
        decode(assertion, other.public_key(), algorithm, TOKEN_URL)


def test_kid_header_when_key_id_is_set(keys) -> None:
    auth = authenticate(
        signed(keys["ES256"], "ES256", key_id="key-2024"), TOKEN_URL, now=time.time()
    )
    assert jwt.get_unverified_header(auth.form["client_assertion"])["kid"] == "key-2024"


def test_fresh_jti_on_every_call(keys) -> None:
    creds = signed(keys["RS256"], "RS256")
    ids = set()
    for _ in range(5):
        assertion = authenticate(creds, TOKEN_URL, now=1_700_000_000).form["client_assertion"]
        claims = jwt.decode(assertion, options={"verify_signature": False})
        ids.add(claims["jti"])
    assert len(ids) == 5


def test_injected_time_sets_iat_and_exp(keys) -> None:
    auth = authenticate(signed(keys["RS256"], "RS256"), TOKEN_URL, now=1_000_000.9)
    claims = jwt.decode(auth.form["client_assertion"], options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (1_000_000, 1_000_060)


def test_expired_assertion_is_refused_by_a_verifier(keys) -> None:
    auth = authenticate(signed(keys["RS256"], "RS256"), TOKEN_URL, now=time.time() - 120)
    with pytest.raises(jwt.ExpiredSignatureError):
        decode(auth.form["client_assertion"], keys["RS256"].public_key(), "RS256", TOKEN_URL)


@pytest.mark.parametrize("method", [AuthMethod.PRIVATE_KEY_JWT, AuthMethod.CLIENT_SECRET_JWT])
def test_audience_can_be_the_issuer(keys, method: AuthMethod) -> None:
    fields = {"token_url": None, "issuer": ISSUER, "assertion_audience": AssertionAudience.ISSUER}
    if method is AuthMethod.PRIVATE_KEY_JWT:
        creds, key, algorithm = signed(keys["RS256"], "RS256", **fields), keys["RS256"], "RS256"
        key = key.public_key()
    else:
        creds, key, algorithm = credentials(method, **fields), SECRET.encode(), "HS256"
    assertion = authenticate(creds, "https://idp.test/discovered/token", now=time.time()).form[
        "client_assertion"
    ]
    assert decode(assertion, key, algorithm, ISSUER)["aud"] == ISSUER
    with pytest.raises(jwt.InvalidAudienceError):
        decode(assertion, key, algorithm, "https://idp.test/discovered/token")


def test_default_audience_is_the_endpoint_used_even_with_an_issuer(keys) -> None:
    creds = signed(keys["ES256"], "ES256", token_url=None, issuer=ISSUER)
    endpoint = "https://idp.test/discovered/token"
    assertion = authenticate(creds, endpoint, now=time.time()).form["client_assertion"]
    assert decode(assertion, keys["ES256"].public_key(), "ES256", endpoint)["aud"] == endpoint


def test_client_secret_jwt_is_hs256_over_the_secret() -> None:
    auth = authenticate(credentials(AuthMethod.CLIENT_SECRET_JWT), TOKEN_URL, now=time.time())
    assertion = auth.form["client_assertion"]
    assert jwt.get_unverified_header(assertion)["alg"] == "HS256"
    claims = decode(assertion, SECRET.encode(), "HS256", TOKEN_URL)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["exp"] - claims["iat"] == 60
    with pytest.raises(jwt.InvalidSignatureError):
        decode(assertion, b"another secret that is long enough", "HS256", TOKEN_URL)
    assert SECRET in auth.secrets  # scrubbed from whatever the server echoes


@pytest.mark.parametrize("method", [AuthMethod.PRIVATE_KEY_JWT, AuthMethod.CLIENT_SECRET_JWT])
async def test_jwt_request_form(keys, method: AuthMethod) -> None:
    creds = (
        signed(keys["PS256"], "PS256", scopes=("read",))
        if method is AuthMethod.PRIVATE_KEY_JWT
        else credentials(method, scopes=("read",))
    )
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, grant(creds))
    (request,) = handler.requests
    assert "authorization" not in request.headers
    sent = form(request)
    assert set(sent) == {
        "grant_type",
        "scope",
        "client_id",
        "client_assertion_type",
        "client_assertion",
    }
    assert sent["client_assertion_type"] == [JWT_BEARER]
    assert sent["client_id"] == [CLIENT_ID]
    assert "client_secret" not in sent
    assert SECRET not in request.content.decode("ascii")
    claims = jwt.decode(sent["client_assertion"][0], options={"verify_signature": False})
    assert claims["aud"] == TOKEN_URL


async def test_an_echoed_assertion_is_scrubbed(keys) -> None:
    echo = echoing(401, "invalid_client", "client_assertion", says="bad ")
    error = await refused(echo, grant(signed(keys["RS256"], "RS256")))
    assert error.description == "bad [redacted]"


# --- client_secret_basic ---


@pytest.mark.parametrize(
    ("encoding", "expected"), [(BasicEncoding.RAW, RAW_VECTOR), (BasicEncoding.FORM, FORM_VECTOR)]
)
def test_basic_vectors(encoding: BasicEncoding, expected: str) -> None:
    assert basic_credentials(CLIENT_ID, SECRET, encoding) == expected


def test_raw_basic_is_plain_base64_of_id_and_secret() -> None:
    value = basic_credentials("a:b", "c&d e%", BasicEncoding.RAW).removeprefix("Basic ")
    assert base64.b64decode(value) == b"a:b:c&d e%"


@pytest.mark.parametrize(
    ("encoding", "expected"), [(BasicEncoding.RAW, RAW_VECTOR), (BasicEncoding.FORM, FORM_VECTOR)]
)
async def test_basic_request_uses_the_configured_encoding(encoding, expected: str) -> None:
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, grant(credentials(AuthMethod.CLIENT_SECRET_BASIC, basic_encoding=encoding)))
    (request,) = handler.requests
    assert request.headers.get_list("authorization") == [expected]
    assert set(form(request)) == {"grant_type"}


async def test_no_probing_between_encodings_on_failure() -> None:
    handler = Recorder(json_answer(401, {"error": "invalid_client"}))
    creds = credentials(AuthMethod.CLIENT_SECRET_BASIC, basic_encoding=BasicEncoding.RAW)
    with pytest.raises(TokenError):
        await ask(handler, grant(creds))
    assert [r.headers["authorization"] for r in handler.requests] == [RAW_VECTOR]


# --- tls_client_auth, and one method per request ---


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> TlsIdentity:
    folder: Path = tmp_path_factory.mktemp("client-cert")
    issued = trustme.CA().issue_cert("my-client.test")
    issued.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    issued.private_key_pem.write_to_path(str(folder / "key.pem"))
    return TlsIdentity(str(folder / "cert.pem"), str(folder / "key.pem"))


def test_tls_client_auth_sends_only_the_client_id() -> None:
    auth = authenticate(credentials(AuthMethod.TLS_CLIENT_AUTH), TOKEN_URL, now=time.time())
    assert (auth.headers, auth.form, auth.secrets) == ({}, {"client_id": CLIENT_ID}, ())


async def test_tls_client_auth_request(client_cert: TlsIdentity) -> None:
    transport = TokenTransport(client_cert=client_cert)
    creds = credentials(AuthMethod.TLS_CLIENT_AUTH, transport=transport)
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, grant(creds))
    (request,) = handler.requests
    assert "authorization" not in request.headers
    assert form(request) == {"grant_type": ["client_credentials"], "client_id": [CLIENT_ID]}


def evidence(request: httpx.Request) -> set[str]:
    """Which ways of authenticating the client a token request carries."""
    sent = form(request)
    found = {"basic"} if "authorization" in request.headers else set()
    found |= {"secret in body"} if "client_secret" in sent else set()
    found |= {"assertion"} if "client_assertion" in sent else set()
    return found


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (AuthMethod.CLIENT_SECRET_BASIC, {"basic"}),
        (AuthMethod.CLIENT_SECRET_POST, {"secret in body"}),
        (AuthMethod.CLIENT_SECRET_JWT, {"assertion"}),
        (AuthMethod.PRIVATE_KEY_JWT, {"assertion"}),
        (AuthMethod.TLS_CLIENT_AUTH, set()),  # the certificate, on the TLS layer
    ],
)
async def test_exactly_one_method_per_request(keys, client_cert, method, expected) -> None:
    if method is AuthMethod.PRIVATE_KEY_JWT:
        creds = signed(keys["RS256"], "RS256")
    elif method is AuthMethod.TLS_CLIENT_AUTH:
        creds = credentials(method, transport=TokenTransport(client_cert=client_cert))
    else:
        creds = credentials(method)
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, grant(creds))
    (request,) = handler.requests
    assert evidence(request) == expected
    assert request.headers.get_list("authorization") in ([], [FORM_VECTOR])
