"""The cache key follows everything that decides which token is issued (issue 4's request
parameters and auth methods included), ignores the order of order-free parameters, and never
carries secret material."""

from __future__ import annotations

import base64
import dataclasses
import re

import pytest

from mitm_oauth2.model.credentials import AssertionAudience
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import BasicEncoding
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import SigningKey
from mitm_oauth2.model.credentials import TlsIdentity
from mitm_oauth2.model.credentials import TokenTransport
from tests.unit.broker_fakes import key_for
from tests.unit.broker_fakes import with_credentials

SECRET = "p@ss:w+rd/%=é"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END"
KEY = SigningKey("/keys/a.pem", Secret(PEM), "RS256")
FULL = {
    "scopes": ("read", "write", "admin"),
    "audience": "https://api.test",
    "resources": ("https://a.test", "https://b.test"),
    "extra_params": (("prompt", "none"), ("tenant", "t1")),
    "token_headers": (("X-Tenant", "t1"), ("X-Region", "eu")),
}


@pytest.mark.parametrize(
    "reordered",
    [
        {"scopes": ("admin", "read", "write")},
        {"resources": ("https://b.test", "https://a.test")},
        {"extra_params": (("tenant", "t1"), ("prompt", "none"))},
        {"token_headers": (("X-Region", "eu"), ("X-Tenant", "t1"))},
        {"token_headers": (("x-tenant", "t1"), ("X-REGION", "eu"))},  # names are case-free
    ],
    ids=["scopes", "resources", "extra_params", "token_headers", "header name case"],
)
def test_order_does_not_change_the_key(make_grant, reordered) -> None:
    grant = make_grant(**FULL)
    assert key_for(with_credentials(grant, **reordered)) == key_for(grant)


CHANGES = {
    "token_url": {"token_url": "https://idp.test/oauth/token2"},
    "issuer": {"token_url": None, "issuer": "https://idp.test"},
    "other issuer": {"issuer": "https://idp.test/realms/b"},
    "client_id": {"client_id": "other client"},
    "secret": {"client_secret": Secret(SECRET + "!")},
    "auth_method": {"auth_method": AuthMethod.CLIENT_SECRET_POST},
    "client_secret_jwt": {"auth_method": AuthMethod.CLIENT_SECRET_JWT},
    "basic_encoding": {"basic_encoding": BasicEncoding.RAW},
    "private key": {"signing_key": SigningKey("/keys/a.pem", Secret(PEM + "X"), "RS256")},
    "signing_alg": {"signing_key": dataclasses.replace(KEY, algorithm="PS256")},
    "key_id": {"signing_key": dataclasses.replace(KEY, key_id="k2")},
    "assertion_audience": {"assertion_audience": AssertionAudience.ISSUER},
    "scope": {"scopes": ("read", "write")},
    "audience": {"audience": "https://api2.test"},
    "no audience": {"audience": None},
    "resource": {"resources": ("https://a.test",)},
    "resource value": {"resources": ("https://a.test", "https://c.test")},
    "extra param value": {"extra_params": (("prompt", "login"), ("tenant", "t1"))},
    "extra param name": {"extra_params": (("prompt", "none"), ("tenant2", "t1"))},
    "extra param dropped": {"extra_params": (("tenant", "t1"),)},
    "token header value": {"token_headers": (("X-Tenant", "t2"), ("X-Region", "eu"))},
    "token header added": {"token_headers": (*FULL["token_headers"], ("X-More", "1"))},
    "client certificate": {"transport": TokenTransport(client_cert=TlsIdentity("c.pem", "k.pem"))},
}


@pytest.mark.parametrize("changes", list(CHANGES.values()), ids=list(CHANGES))
def test_each_setting_changes_the_key(make_grant, changes) -> None:
    grant = make_grant(signing_key=KEY, issuer=None, **FULL)
    if "issuer" in changes and "token_url" not in changes:
        grant = with_credentials(grant, token_url=None, issuer="https://idp.test")
    assert key_for(with_credentials(grant, **changes)) != key_for(grant)


def test_private_key_change_with_private_key_jwt(make_grant) -> None:
    grant = make_grant(auth_method=AuthMethod.PRIVATE_KEY_JWT, secret="unused", signing_key=KEY)
    other = with_credentials(
        grant, signing_key=SigningKey("/keys/b.pem", Secret(PEM + "Y"), "RS256")
    )
    assert key_for(other) != key_for(grant)


@pytest.mark.parametrize(
    "changes",
    [
        {"transport": TokenTransport(timeout=3.0)},
        {"transport": TokenTransport(ca_bundle="/etc/ca.pem", proxy="http://proxy.test:3128")},
    ],
    ids=["timeout", "ca bundle and proxy"],
)
def test_how_the_call_travels_does_not_change_the_key(make_grant, changes) -> None:
    grant = make_grant(**FULL)
    assert key_for(with_credentials(grant, **changes)) == key_for(grant)


def test_nothing_secret_in_the_key(make_grant) -> None:
    grant = make_grant(signing_key=KEY, **FULL)
    key = key_for(grant)
    assert re.fullmatch(r"token/v1/api/[0-9a-f]{64}", key)
    basic = base64.b64encode(f"my client:{SECRET}".encode()).decode()
    for material in (SECRET, "p@ss", basic, PEM, "MIIEvQ", "BEGIN", "t1", "https://a.test"):
        assert material not in key
