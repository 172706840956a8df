"""The token request with DPoP (RFC 9449 §5, §8): a proof of the proxy's key on each request,
the server's nonce taken and the request made again once (new proof, new client assertion),
the nonce kept for the next request, and only a DPoP token accepted."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
import pytest
from jwt.algorithms import ECAlgorithm

from mitm_oauth2.client.dpop import generate_dpop_key
from mitm_oauth2.client.token_client import TokenClient
from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import TokenGrant
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import ask
from tests.unit.client_helpers import refused

pytestmark = pytest.mark.anyio

TOKEN_URL = "https://idp.test/oauth/token"
DPOP_TOKEN = {"access_token": "tok-d", "token_type": "DPoP", "expires_in": 3600}
KEY = generate_dpop_key()


def grant() -> TokenGrant:
    credentials = ClientCredentials(
        client_id="app", token_url=TOKEN_URL, client_secret=Secret("a long client secret"), dpop=KEY
    )
    return TokenGrant("api", credentials, 3600.0)


def proof_of(request: httpx.Request) -> dict[str, Any]:
    token = request.headers["DPoP"]
    header = jwt.get_unverified_header(token)
    public = ECAlgorithm.from_jwk(json.dumps(header["jwk"]))
    claims: dict[str, Any] = jwt.decode(token, public, algorithms=["ES256"])
    return claims


async def test_each_token_request_carries_a_proof_and_gets_a_dpop_token() -> None:
    handler = Recorder(lambda request: httpx.Response(200, json=DPOP_TOKEN))
    response = await ask(handler, grant())
    assert response.token_type == "DPoP"
    claims = proof_of(handler.requests[0])
    assert (claims["htm"], claims["htu"]) == ("POST", TOKEN_URL)
    assert "nonce" not in claims


async def test_the_servers_nonce_is_used_once_asked_and_kept() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "nonce" not in proof_of(request):
            body = {"error": "use_dpop_nonce", "error_description": "nonce required"}
            return httpx.Response(400, json=body, headers={"DPoP-Nonce": "n-1"})
        return httpx.Response(200, json=DPOP_TOKEN, headers={"DPoP-Nonce": "n-2"})

    handler = Recorder(answer)
    client = TokenClient(transport=httpx.MockTransport(handler))
    try:
        assert (await client.request_token(grant().credentials)).access_token == "tok-d"
        await client.request_token(grant().credentials)
    finally:
        await client.aclose()
    first, second, third = (proof_of(request) for request in handler.requests)
    assert "nonce" not in first
    assert second["nonce"] == "n-1"
    assert third["nonce"] == "n-2"  # kept from the last answer: no round trip for it
    assert len({first["jti"], second["jti"], third["jti"]}) == 3


async def test_a_bearer_token_where_dpop_was_asked_for_is_refused() -> None:
    handler = Recorder(
        lambda request: httpx.Response(200, json={**DPOP_TOKEN, "token_type": "Bearer"})
    )
    error = await refused(handler, grant())
    assert "token_type 'Bearer', not DPoP" in error.cause
    assert "DPoP enabled for this client" in error.cause


async def test_a_nonce_asked_for_twice_is_an_error_after_one_retry() -> None:
    body = {"error": "use_dpop_nonce"}
    handler = Recorder(lambda request: httpx.Response(400, json=body, headers={"DPoP-Nonce": "n"}))
    error = await refused(handler, grant())
    assert error.oauth_error == "use_dpop_nonce"
    assert len(handler.requests) == 2
