"""client_assertion (workload identity): the platform's JWT, read from its file for every token
request, sent as an RFC 7523 client assertion; a file that cannot serve (missing, not a JWT,
unsigned, expired) fails the token request with the file named and the assertion never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mitm_oauth2.client.assertion import AssertionProblem
from mitm_oauth2.client.assertion import check_assertion
from mitm_oauth2.client.auth import JWT_BEARER
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import ClientCredentials
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

KEY = ec.generate_private_key(ec.SECP256R1())


def platform_jwt(clock: FakeClock, lifetime: float = 3600, **claims: Any) -> str:
    """What a platform writes: a signed JWT naming this workload."""
    body = {"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:ns:app"}
    body |= {"aud": "idp", "iat": int(clock.wall()), "exp": int(clock.wall() + lifetime), **claims}
    return jwt.encode(body, KEY, algorithm="ES256", headers={"kid": "k8s-1"})


def grant(path: Path) -> TokenGrant:
    credentials = ClientCredentials(
        client_id="app",
        token_url="https://idp.test/oauth/token",
        auth_method=AuthMethod.CLIENT_ASSERTION,
        assertion_file=str(path),
    )
    return TokenGrant("api", credentials, 3600.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return tmp_path / "token"


async def test_sent_as_a_client_assertion(clock: FakeClock, token_file: Path) -> None:
    assertion = platform_jwt(clock)
    token_file.write_text(assertion + "\n")  # as kubelet writes it, or with a newline
    handler = Recorder(json_answer(200, GOOD))
    await ask(handler, grant(token_file), clock=clock)
    (request,) = handler.requests
    assert "authorization" not in request.headers
    assert form(request) == {
        "grant_type": ["client_credentials"],
        "client_id": ["app"],
        "client_assertion_type": [JWT_BEARER],
        "client_assertion": [assertion],
    }


async def test_read_again_for_every_token_request(clock: FakeClock, token_file: Path) -> None:
    """The platform rotates the file; each token request sends what it holds then."""
    handler = Recorder(json_answer(200, GOOD))
    sent = []
    for n in range(3):
        assertion = platform_jwt(clock, jti=f"rotation-{n}")
        token_file.write_text(assertion)
        await ask(handler, grant(token_file), clock=clock)
        sent.append(assertion)
        clock.advance(1800)
    assert [form(r)["client_assertion"] for r in handler.requests] == [[a] for a in sent]


async def test_an_echoed_assertion_is_scrubbed(clock: FakeClock, token_file: Path) -> None:
    token_file.write_text(platform_jwt(clock))
    echo = echoing(401, "invalid_client", "client_assertion", says="untrusted issuer: ")
    error = await refused(echo, grant(token_file), clock=clock)
    assert error.description == "untrusted issuer: [redacted]"
    assert "client_assertion_file" in error.cause  # what to check


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read the client assertion file"),
        ("", "is not a JWT"),
        ("not-a-jwt", "is not a JWT"),
        ("a.b.c", "is not a JWT"),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "is not a JWT"),
        (b"\xff\xfe", "cannot read the client assertion file"),
    ],
    ids=["missing", "empty", "one-part", "garbage-parts", "certificate", "not-utf8"],
)
async def test_a_file_that_cannot_serve_fails_before_any_request(
    clock: FakeClock, token_file: Path, content: str | bytes | None, words: str
) -> None:
    if isinstance(content, bytes):
        token_file.write_bytes(content)
    elif content is not None:
        token_file.write_text(content)
    handler = Recorder(json_answer(200, GOOD))
    error = await refused(handler, grant(token_file), clock=clock)
    assert words in error.cause
    assert str(token_file) in error.cause
    assert handler.requests == []


async def test_an_expired_assertion_is_told_with_its_expiry(
    clock: FakeClock, token_file: Path
) -> None:
    assertion = platform_jwt(clock, lifetime=-90)
    token_file.write_text(assertion)
    handler = Recorder(json_answer(200, GOOD))
    error = await refused(handler, grant(token_file), clock=clock)
    assert "expired at" in error.cause
    assert "(90 s ago)" in error.cause
    assert assertion not in error.cause
    assert assertion.split(".")[1] not in error.cause
    assert handler.requests == []


def test_unsigned_jwts_are_refused(clock: FakeClock) -> None:
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none")
    with pytest.raises(AssertionProblem, match="unsigned"):
        check_assertion(unsigned, now=clock.wall())


def test_without_a_time_an_expired_one_still_passes(clock: FakeClock) -> None:
    """As the configuration checks it: the platform may renew it before the first request."""
    assertion = platform_jwt(clock, lifetime=-90)
    assert check_assertion(f"  {assertion}\n", now=None) == assertion
    with pytest.raises(AssertionProblem, match="expired"):
        check_assertion(assertion, now=clock.wall())
