"""The token request's every way to fail: error answers, bad documents, oversized bodies,
transport errors, Retry-After; and the secret never in an error."""

from __future__ import annotations

import base64
import email.utils
import json
from collections.abc import AsyncIterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from urllib.parse import quote
from urllib.parse import quote_plus

import brotli
import httpx
import pytest

from mitm_oauth2.client.http import MAX_RESPONSE_BYTES
from mitm_oauth2.client.token_client import parse_retry_after
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.errors import TokenError
from tests.unit.client_helpers import GOOD
from tests.unit.client_helpers import SECRET
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import ask
from tests.unit.client_helpers import echoing
from tests.unit.client_helpers import json_answer
from tests.unit.client_helpers import refused

pytestmark = pytest.mark.anyio


def raw(status: int, body: bytes, content_type: str = "application/json"):
    return lambda request: httpx.Response(
        status, content=body, headers={"content-type": content_type}
    )


ECHO = f"client secret '{SECRET}' is wrong"

FAILURES = [
    # (id, handler, words in the cause, oauth_error, status)
    (
        "invalid_client",
        json_answer(400, {"error": "invalid_client", "error_description": ECHO}),
        ["HTTP 400", "invalid_client"],
        "invalid_client",
        400,
    ),
    ("401 no body", raw(401, b""), ["HTTP 401"], None, 401),
    (
        "503 html",
        raw(503, b"<html>Service Unavailable</html>", "text/html"),
        ["HTTP 503"],
        None,
        503,
    ),
    ("500 json without error", json_answer(500, {"message": SECRET}), ["HTTP 500"], None, 500),
    ("500 error not a string", json_answer(500, {"error": 3}), ["HTTP 500"], None, 500),
    ("200 not json", raw(200, b"access_token=tok-1", "text/plain"), ["JSON"], None, 200),
    ("200 json array", json_answer(200, ["tok-1"]), ["JSON"], None, 200),
    ("200 not utf-8", raw(200, b"\xff\xfe{}"), ["JSON"], None, 200),
    (
        "200 with error",
        json_answer(200, {"error": "invalid_scope"}),
        ["invalid_scope"],
        "invalid_scope",
        200,
    ),
    ("no access_token", json_answer(200, {"token_type": "Bearer"}), ["access_token"], None, 200),
    (
        "empty access_token",
        json_answer(200, {**GOOD, "access_token": ""}),
        ["access_token"],
        None,
        200,
    ),
    (
        "blank access_token",
        json_answer(200, {**GOOD, "access_token": " "}),
        ["access_token"],
        None,
        200,
    ),
    (
        "access_token number",
        json_answer(200, {**GOOD, "access_token": 5}),
        ["access_token"],
        None,
        200,
    ),
    (
        "mac token",
        json_answer(200, {**GOOD, "token_type": "mac"}),
        ["mac", "not Bearer"],
        None,
        200,
    ),
    ("token_type number", json_answer(200, {**GOOD, "token_type": 1}), ["not Bearer"], None, 200),
    ("302 redirect", raw(302, b"", "text/plain"), ["HTTP 302"], None, 302),
]


@pytest.mark.parametrize(
    ("handler", "words", "oauth_error", "status"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
async def test_failures(make_grant, handler, words: list[str], oauth_error, status) -> None:
    error = await refused(handler, make_grant())
    for word in words:
        assert word in error.cause
    assert error.oauth_error == oauth_error
    assert error.status == status
    assert SECRET not in error.cause
    assert SECRET not in str(error)
    assert SECRET not in (error.description or "")


async def test_error_description_is_scrubbed(make_grant) -> None:
    body = {"error": "invalid_client", "error_description": ECHO}
    error = await refused(json_answer(401, body), make_grant())
    assert error.description == "client secret '[redacted]' is wrong"


@pytest.mark.parametrize(
    "echoed",
    [
        quote_plus(SECRET, safe=""),
        quote(SECRET, safe=""),
        json.dumps(SECRET)[1:-1],
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    ],
    ids=["form-encoded", "percent-encoded", "json-escaped", "base64", "base64url"],
)
async def test_a_secret_echoed_in_any_encoding_is_scrubbed(make_grant, echoed: str) -> None:
    body = {"error": "invalid_client", "error_description": f"got {echoed} from you"}
    error = await refused(json_answer(401, body), make_grant())
    assert error.description == "got [redacted] from you"


async def test_oversized_body(make_grant) -> None:
    handler = raw(200, b'{"access_token": "' + b"x" * MAX_RESPONSE_BYTES + b'"}')
    with pytest.raises(TokenError, match="more than"):
        await ask(handler, make_grant())


async def test_endless_body_is_not_read_whole(make_grant) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 64 * MAX_RESPONSE_BYTES:
            sent += 65536
            yield b" " * 65536

    with pytest.raises(TokenError, match="more than"):
        await ask(lambda request: httpx.Response(200, content=endless()), make_grant())
    assert sent <= 2 * MAX_RESPONSE_BYTES


async def test_compressed_body_is_refused_unread(make_grant) -> None:
    """A 2 KiB brotli body inflates to a gigabyte: the limit must apply before inflating."""
    bomb = brotli.compress(b"\0" * (64 * MAX_RESPONSE_BYTES), quality=5)

    async def stream() -> AsyncIterator[bytes]:
        yield bomb

    recorder = Recorder(
        lambda request: httpx.Response(200, content=stream(), headers={"Content-Encoding": "br"})
    )
    with pytest.raises(TokenError, match="Content-Encoding 'br', though asked for identity"):
        await ask(recorder, make_grant())
    (request,) = recorder.requests
    assert request.headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize(
    ("exception", "words"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot connect"),
        (httpx.ReadTimeout("timed out"), "timed out after 2.5 s"),
        (httpx.ConnectTimeout("timed out"), "timed out after 2.5 s"),
        (
            httpx.RemoteProtocolError("peer closed connection"),
            "closed the connection without an answer",
        ),
        (
            httpx.ReadError("[Errno 104] Connection reset by peer"),
            "connection to token endpoint broke ([Errno 104] Connection reset by peer)",
        ),
        (httpx.WriteError(""), "connection to token endpoint broke (WriteError)"),
    ],
)
async def test_transport_errors(make_grant, exception: Exception, words: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exception

    error = await refused(fail, make_grant(token_timeout=2.5))
    assert words in error.cause
    assert error.status is None
    assert SECRET not in error.cause


async def test_secret_post_failures_do_not_leak(make_grant) -> None:
    """A server echoing the posted secret back must not get it into the error."""
    echo = echoing(400, "invalid_request", "client_secret", says="bad secret ")
    error = await refused(echo, make_grant(auth_method=AuthMethod.CLIENT_SECRET_POST))
    assert error.oauth_error == "invalid_request"
    assert error.description == "bad secret [redacted]"
    assert SECRET not in error.cause


async def test_an_error_code_echoing_the_secret_is_scrubbed(make_grant) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": f"{quote_plus(SECRET, safe='')}"})

    error = await refused(echo, make_grant())
    assert SECRET not in error.cause
    assert quote_plus(SECRET, safe="") not in error.cause


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("soon", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_parsing(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_http_date_in_the_future() -> None:
    future = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)
    assert 290 <= (parse_retry_after(future) or 0) <= 300


async def test_retry_after_reaches_the_error(make_grant) -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "30"}, text="<html>busy</html>")

    error = await refused(busy, make_grant())
    assert (error.status, error.retry_after) == (503, 30.0)


@pytest.mark.parametrize(
    ("handler", "fields", "advice"),
    [
        (
            raw(404, b"Not Found", "text/plain"),
            {},
            "(https://idp.test/oauth/token: check token_url)",
        ),
        (
            json_answer(405, {"error": "method"}),
            {},
            "(https://idp.test/oauth/token: check token_url)",
        ),
        (raw(302, b""), {}, "(https://idp.test/oauth/token: check token_url)"),
        (raw(500, b"oops", "text/plain"), {}, "HTTP 500 (https://idp.test/oauth/token)"),
        (raw(401, b""), {}, "(check client_id and the client secret)"),
        (
            json_answer(400, {"error": "invalid_client"}),
            {"auth_method": AuthMethod.CLIENT_SECRET_POST},
            "'invalid_client' (check client_id and the client secret)",
        ),
        (
            json_answer(400, {"error": "invalid_scope"}),
            {},
            "'invalid_scope' (check scope)",
        ),
        (
            json_answer(400, {"error": "invalid_target"}),
            {},
            "'invalid_target' (check resource and audience)",
        ),
        (
            json_answer(400, {"error": "unauthorized_client"}),
            {},
            "(the server does not let this client use the client-credentials grant)",
        ),
    ],
    ids=["404", "405 json", "redirect", "500", "401", "invalid_client", "scope", "target", "grant"],
)
async def test_a_refusal_says_what_to_check(make_grant, handler, fields, advice: str) -> None:
    error = await refused(
        handler, make_grant(token_url="https://idp.test/oauth/token?x=1", **fields)
    )
    assert advice in error.cause
    assert "x=1" not in error.cause  # the query is not shown


async def test_invalid_request_adds_nothing_of_its_own(make_grant) -> None:
    error = await refused(json_answer(400, {"error": "invalid_request"}), make_grant())
    assert error.cause == "token endpoint answered HTTP 400 with error 'invalid_request'"
