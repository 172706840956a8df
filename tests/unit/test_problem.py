"""RFC 9457 problem documents: what a caller learns when no token could be had."""

from __future__ import annotations

import json

import pytest

from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.problem import CONTENT_TYPE
from mitm_oauth2.problem import TOKEN_UNAVAILABLE
from mitm_oauth2.problem import token_unavailable

SECRET = "p@ss:w+rd/%=é"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-token"


def test_callers_get_the_rfc_9457_media_type() -> None:
    problem = token_unavailable("billing", TokenError("token endpoint timed out after 10 s"))
    assert problem.headers() == {"Content-Type": "application/problem+json"}


@pytest.mark.parametrize(
    ("error", "oauth_error"),
    [
        (TokenError("token endpoint answered HTTP 503", status=503), None),
        (
            TokenError(
                "token endpoint answered HTTP 401 with error 'invalid_client'",
                oauth_error="invalid_client",
                status=401,
                description=f"secret {SECRET} rejected; last token {TOKEN}",
            ),
            "invalid_client",
        ),
        (TokenError("token endpoint timed out after 10 s"), None),
    ],
)
def test_token_unavailable(error: TokenError, oauth_error: str | None) -> None:
    problem = token_unavailable("billing", error)
    body = problem.to_json()
    document = json.loads(body)
    expected = {
        "type": TOKEN_UNAVAILABLE,
        "title": "No access token for the backend",
        "status": 502,
        "detail": f"No access token could be obtained for backend 'billing': {error.cause}.",
        "backend": "billing",
    }
    if oauth_error is not None:
        expected["oauth_error"] = oauth_error
    assert document == expected
    assert problem.status == 502
    assert SECRET.encode() not in body
    assert json.dumps(SECRET).encode() not in body
    assert TOKEN.encode() not in body
    assert b"rejected" not in body  # the server's description is for the log, not the caller


def test_type_is_an_absolute_uri() -> None:
    problem = token_unavailable("api", TokenError("x"))
    assert problem.type.startswith("urn:") or problem.type.startswith("https://")


def test_body_is_utf8_json_with_odd_names() -> None:
    body = token_unavailable("api-ä", TokenError('cause with "quotes"')).to_json()
    document = json.loads(body.decode("utf-8"))
    assert document["backend"] == "api-ä"
    assert 'cause with "quotes"' in document["detail"]


@pytest.mark.parametrize(("retry_after", "header"), [(None, None), (0.2, "1"), (99.1, "100")])
def test_503_with_retry_after_only_when_the_server_said_when(
    retry_after: float | None, header: str | None
) -> None:
    problem = token_unavailable("api", TokenError("HTTP 503", status=503, retry_after=retry_after))
    assert problem.status == (502 if header is None else 503)
    assert problem.headers().get("Retry-After") == header
    assert problem.headers()["Content-Type"] == CONTENT_TYPE
    assert json.loads(problem.to_json())["status"] == problem.status
