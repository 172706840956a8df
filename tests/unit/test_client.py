"""The token request: RFC 6749 §2.3.1 client authentication, the form, and the response parsed."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote_plus

import pytest

from mitm_oauth2.client.auth import basic_credentials
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import BasicEncoding
from tests.unit.client_helpers import GOOD
from tests.unit.client_helpers import SECRET
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import ask
from tests.unit.client_helpers import form
from tests.unit.client_helpers import json_answer

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("client_id", "secret", "expected"),
    [
        ("my client", SECRET, "Basic bXkrY2xpZW50OnAlNDBzcyUzQXclMkJyZCUyRiUyNSUzRCVDMyVBOQ=="),
        ("client", "secret", "Basic " + base64.b64encode(b"client:secret").decode()),
        ("a:b", "c&d e", "Basic " + base64.b64encode(b"a%3Ab:c%26d+e").decode()),
    ],
)
def test_basic_credentials_vectors(client_id: str, secret: str, expected: str) -> None:
    assert basic_credentials(client_id, secret, BasicEncoding.FORM) == expected


@pytest.mark.parametrize("secret", [SECRET, "a:b:c", "100%", "x+y z&w=v", "ünï", "~-._*"])
def test_basic_credentials_round_trip(secret: str) -> None:
    """A server decoding per RFC 6749 §2.3.1 gets the id and the secret back exactly."""
    encoded = basic_credentials("my client", secret, BasicEncoding.FORM).removeprefix("Basic ")
    raw_id, raw_secret = base64.b64decode(encoded).decode("ascii").split(":")
    assert (unquote_plus(raw_id), unquote_plus(raw_secret)) == ("my client", secret)


async def test_basic_request(make_grant) -> None:
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, make_grant(scopes=("read", "write")))
    (request,) = handler.requests
    assert request.method == "POST"
    assert str(request.url) == "https://idp.test/oauth/token"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    assert request.headers["authorization"] == (
        "Basic bXkrY2xpZW50OnAlNDBzcyUzQXclMkJyZCUyRiUyNSUzRCVDMyVBOQ=="
    )
    assert form(request) == {"grant_type": ["client_credentials"], "scope": ["read write"]}


async def test_no_scope_sends_no_scope(make_grant) -> None:
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, make_grant(scopes=()))
    assert form(handler.requests[0]) == {"grant_type": ["client_credentials"]}


async def test_client_secret_post(make_grant) -> None:
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, make_grant(auth_method=AuthMethod.CLIENT_SECRET_POST, scopes=("read",)))
    (request,) = handler.requests
    assert "authorization" not in request.headers
    assert form(request) == {
        "grant_type": ["client_credentials"],
        "scope": ["read"],
        "client_id": ["my client"],
        "client_secret": [SECRET],
    }


@pytest.mark.parametrize(
    ("document", "expires_in"),
    [
        (GOOD, 3600.0),
        ({**GOOD, "token_type": "bearer"}, 3600.0),
        ({**GOOD, "token_type": "BEARER"}, 3600.0),
        ({"access_token": "tok-1"}, None),
        ({**GOOD, "expires_in": "3600"}, 3600.0),
        ({**GOOD, "expires_in": " 60 "}, 60.0),
        ({**GOOD, "expires_in": 3599.9}, 3599.9),
        ({**GOOD, "expires_in": "soon"}, None),
        ({**GOOD, "expires_in": None}, None),
        ({**GOOD, "expires_in": True}, None),
        ({**GOOD, "expires_in": [60]}, None),
        ({**GOOD, "expires_in": "inf"}, None),
    ],
)
async def test_response_parsing(make_grant, document: dict[str, Any], expires_in: Any) -> None:
    response = await ask(json_answer(200, document), make_grant())
    assert response.access_token == "tok-1"
    assert response.token_type == "Bearer"
    assert response.expires_in == expires_in


@pytest.mark.parametrize("value", ["soon", True, [60], "inf"])
async def test_expires_in_that_is_no_number_is_logged(
    make_grant, caplog: pytest.LogCaptureFixture, value: Any
) -> None:
    response = await ask(json_answer(200, {**GOOD, "expires_in": value}), make_grant())
    assert response.expires_in is None
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert "is not a number; taken as absent" in record.getMessage()


async def test_scope_in_response_is_kept(make_grant) -> None:
    response = await ask(json_answer(200, {**GOOD, "scope": "read"}), make_grant())
    assert response.scope == "read"
    response = await ask(json_answer(200, {**GOOD, "scope": ["read"]}), make_grant())
    assert response.scope is None
