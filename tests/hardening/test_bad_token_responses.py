"""Bad token responses, through the real mitmdump and the dev authorization server: each one is
refused with a 502 problem document that says why, and the backend receives nothing; the few a
lenient client should accept (an odd `expires_in`, JSON labelled text/plain, no `token_type`)
give a token whose lifetime is bounded by `max_token_age`.

Every case has its own backend (its name, `path_prefix` and scope), so no case sees another's
token or failure memory. The dev server's knobs (status, body, content_type, token_type,
expires_in) shape its answer; its logs say what the token endpoint and the backend received.
That a body over 1 MiB is not read whole (an endless one, a compressed one) is measured on the
token client itself: tests/unit/test_client_failures.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mitm_oauth2.client.http import MAX_RESPONSE_BYTES
from tests.hardening.launch import Launcher
from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersProcess
from tests.support.devservers import token_id
from tests.support.proxies import Proxy

pytestmark = pytest.mark.integration

MAX_TOKEN_AGE = 600
HTML = "<html><body><form>Sign in</form></body></html>"
NOT_JSON = "token endpoint answered without a JSON object"


def body(**fields: Any) -> dict[str, Any]:
    """Knobs for a 200 whose JSON body is exactly `fields`."""
    return {"body": json.dumps(fields)}


def refused(cause: str, oauth_error: str | None = None) -> tuple[str, str, str | None]:
    return ("502", cause, oauth_error)


def used(lifetime: int, warning: str | None = None) -> tuple[str, int, str | None]:
    """The token is sent (the backend does not know it: 401, not replayed), lasting `lifetime`;
    the operator is warned (a regex of the proxy's log) when the answer was odd."""
    return ("used", lifetime, warning)


def oauth_error(status: int, error: str, description: str | None = None) -> dict[str, Any]:
    document = {"error": error}
    if description is not None:
        document["error_description"] = description
    return {"status": status, "body": json.dumps(document)}


BAD_INPUTS = [
    # Not a JSON object.
    pytest.param(
        {"status": 200, "body": HTML, "content_type": "text/html"}, refused(NOT_JSON), id="html-200"
    ),
    pytest.param(
        {"status": 503, "body": HTML, "content_type": "text/html"},
        refused("token endpoint answered HTTP 503"),
        id="html-503",
    ),
    pytest.param(
        {"body": '{"access_token": "tok-1", "token_ty'}, refused(NOT_JSON), id="truncated-json"
    ),
    pytest.param({"body": ""}, refused(NOT_JSON), id="empty-200"),
    pytest.param({"body": '["tok-1"]'}, refused(NOT_JSON), id="json-array"),
    pytest.param({"body": '"tok-1"'}, refused(NOT_JSON), id="json-string"),
    pytest.param(
        {
            "body": "access_token=tok-1&token_type=bearer",
            "content_type": "application/x-www-form-urlencoded",
        },
        refused(NOT_JSON),
        id="form-encoded-content-type",
    ),
    pytest.param(
        {"body": json.dumps({"access_token": "x" * MAX_RESPONSE_BYTES})},
        refused(f"token endpoint sent more than {MAX_RESPONSE_BYTES} bytes"),
        id="body-over-1-mib",
    ),
    # access_token missing, not a string, empty, or not fit for a header.
    pytest.param(
        body(token_type="Bearer"),
        refused("token response has no access_token"),
        id="access-token-missing",
    ),
    pytest.param(
        body(access_token=12345, token_type="Bearer"),
        refused("token response has no access_token"),
        id="access-token-number",
    ),
    pytest.param(
        body(access_token=None, token_type="Bearer"),
        refused("token response has no access_token"),
        id="access-token-null",
    ),
    pytest.param(
        body(access_token=["tok-1"], token_type="Bearer"),
        refused("token response has no access_token"),
        id="access-token-list",
    ),
    pytest.param(
        body(access_token="", token_type="Bearer"),
        refused("token response has no access_token"),
        id="access-token-empty",
    ),
    pytest.param(
        body(access_token="   ", token_type="Bearer"),
        refused("token response has no access_token"),
        id="access-token-blank",
    ),
    pytest.param(
        body(access_token="tok\r\nX-Injected: 1", token_type="Bearer"),
        refused("an access_token a header cannot carry"),
        id="access-token-crlf",
    ),
    pytest.param(
        body(access_token="tok en", token_type="Bearer"),
        refused("an access_token a header cannot carry"),
        id="access-token-space",
    ),
    pytest.param(
        body(access_token="tök", token_type="Bearer"),
        refused("an access_token a header cannot carry"),
        id="access-token-non-ascii",
    ),
    # token_type other than Bearer: never downgraded to Bearer.
    pytest.param(
        {"token_type": "DPoP"}, refused("token_type 'DPoP', not Bearer"), id="token-type-dpop"
    ),
    pytest.param(
        {"token_type": "mac"}, refused("token_type 'mac', not Bearer"), id="token-type-mac"
    ),
    pytest.param({"token_type": ""}, refused("token_type '', not Bearer"), id="token-type-empty"),
    pytest.param(
        body(access_token="tok-1", token_type=1),
        refused("token_type '1', not Bearer"),
        id="token-type-number",
    ),
    # RFC 6749 §5.2 errors, with and without description, and a 200 that carries one.
    pytest.param(
        oauth_error(401, "invalid_client", f"secret '{DEMO_CLIENT_SECRET}' is wrong"),
        refused("HTTP 401 with error 'invalid_client'", "invalid_client"),
        id="rfc6749-invalid-client-described",
    ),
    pytest.param(
        oauth_error(400, "invalid_scope"),
        refused("HTTP 400 with error 'invalid_scope'", "invalid_scope"),
        id="rfc6749-invalid-scope-bare",
    ),
    pytest.param(
        oauth_error(400, "unauthorized_client", "grant not allowed"),
        refused("HTTP 400 with error 'unauthorized_client'", "unauthorized_client"),
        id="rfc6749-unauthorized-client",
    ),
    pytest.param(
        {
            "body": json.dumps(
                {"error": "invalid_request", "access_token": "tok-1", "token_type": "Bearer"}
            )
        },
        refused("HTTP 200 with error 'invalid_request'", "invalid_request"),
        id="200-carrying-error",
    ),
    pytest.param(
        {"status": 400, "body": json.dumps({"error": 42})},
        refused("token endpoint answered HTTP 400"),
        id="error-not-a-string",
    ),
    pytest.param(
        oauth_error(400, "invalid_client\r\nX-Injected: 1"),
        refused("with error 'invalid_client??X-Injected: 1'", "invalid_client??X-Injected: 1"),
        id="error-code-crlf",
    ),
    # Accepted, bounded: what lenient clients take, never past max_token_age.
    pytest.param({"content_type": "text/plain"}, used(MAX_TOKEN_AGE), id="json-as-text-plain"),
    pytest.param(
        body(access_token="tok-1", token_type="bearer", expires_in="abc"),
        used(MAX_TOKEN_AGE, 'expires_in "abc" is not a number; taken as absent'),
        id="expires-in-not-a-number",
    ),
    pytest.param(
        body(access_token="tok-1", token_type="Bearer", expires_in=-5),
        used(MAX_TOKEN_AGE, "backend expires-in-negative: expires_in -5 is not positive"),
        id="expires-in-negative",
    ),
    pytest.param(
        body(access_token="tok-1", token_type="Bearer", expires_in=True),
        used(MAX_TOKEN_AGE, "expires_in true is not a number"),
        id="expires-in-boolean",
    ),
    pytest.param(
        {"body": '{"access_token": "tok-1", "token_type": "Bearer", "expires_in": 1e400}'},
        used(MAX_TOKEN_AGE, "expires_in Infinity is not a number"),
        id="expires-in-infinite",
    ),
    pytest.param(
        body(access_token="tok-1", token_type="Bearer", expires_in="300"),
        used(300),
        id="expires-in-numeric-string",
    ),
    pytest.param(
        body(access_token="tok-1", token_type="Bearer", expires_in=10**12),
        used(MAX_TOKEN_AGE),
        id="expires-in-huge",
    ),
    pytest.param(
        body(access_token="tok-1", expires_in=120),
        used(120, "token response has no token_type; taken as Bearer"),
        id="token-type-missing",
    ),
]


@pytest.fixture(scope="module")
def served(launcher: Launcher) -> tuple[DevServersProcess, Proxy]:
    servers = launcher.devservers()
    config = "".join(
        servers.backend_toml(
            case.id,
            path_prefix=f"/{case.id}",
            scope=case.id,  # its own grant: no token or failure memory shared between cases
            max_token_age=MAX_TOKEN_AGE,
            retry_on_401=False,
        )
        for case in BAD_INPUTS
    )
    return servers, launcher.proxy(config)


@pytest.mark.parametrize(("knobs", "expected"), BAD_INPUTS)
def test_a_bad_token_response_is_never_forwarded(
    request: pytest.FixtureRequest,
    served: tuple[DevServersProcess, Proxy],
    knobs: dict[str, Any],
    expected: tuple[Any, ...],
) -> None:
    servers, proxy = served
    name = request.node.callspec.id
    servers.reset()
    servers.configure(**knobs)
    with proxy.client() as client:
        answer = client.post(f"{servers.backend_url}/{name}/orders", content=b"do not forward")
    servers.configure(**{knob: None for knob in ("status", "body", "content_type")})
    assert servers.token_requests() == 1
    received = servers.backend_requests()
    if expected[0] == "used":
        (entry,) = received
        (value,) = entry["authorization"]
        token = value.removeprefix("Bearer ")
        issued = {e.get("token_id") for e in servers.token_log()}
        assert token == "tok-1" or token_id(token) in issued
        proxy.wait_for_output(rf"backend {name}: fetched token \(lifetime {expected[1]} s")
        if expected[2] is not None:
            assert expected[2] in proxy.output()
        return
    _, cause, error = expected
    assert answer.status_code == 502, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["backend"] == name
    assert cause in problem["detail"]
    assert problem.get("oauth_error") == error
    for never in (DEMO_CLIENT_SECRET, "Sign in", "grant not allowed", "\r", "\n"):
        assert never not in problem["detail"]
    assert received == []
    proxy.wait_for_output(f"backend {name}: no token: ")
