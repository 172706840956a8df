"""What a token says of itself: the payload of a JWT access token, decoded and labelled as not
verified, without its signature; an opaque token, or anything that only looks like a JWT, says
nothing."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from mitm_oauth2.model.claims import OPAQUE
from mitm_oauth2.model.claims import read_claims
from mitm_oauth2.model.claims import shown
from mitm_oauth2.model.token import Token

CLAIMS = {
    "iss": "https://idp.test",
    "sub": "svc-orders",
    "aud": ["orders-api", "audit"],
    "scope": "orders:read orders:write",
    "client_id": "orders-proxy",
    "iat": 1_800_000_000,
    "exp": 1_800_003_600,
    "jti": "not shown",
    "email": "not shown either",
}


def part(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_a_jwt_says_who_issued_it_for_whom_and_for_what() -> None:
    token = jwt.encode(CLAIMS, "k" * 32, algorithm="HS256")
    claims = read_claims(token)
    assert claims is not None
    assert claims.shown == {
        "verified": False,
        **{k: v for k, v in CLAIMS.items() if k not in ("jti", "email")},
    }
    assert claims.audiences == ("orders-api", "audit")
    assert claims.scopes == ("orders:read", "orders:write")
    assert claims.summary == "aud orders-api audit · scope orders:read orders:write"
    assert token.rsplit(".", 1)[1] not in json.dumps(claims.shown)  # no signature kept


def test_entra_ids_scp_and_azp() -> None:
    token = f"{part({'alg': 'RS256'})}.{part({'scp': 'User.Read Mail.Send', 'azp': 'app'})}.sig"
    claims = read_claims(token)
    assert claims is not None
    assert claims.scopes == ("User.Read", "Mail.Send")
    assert claims.shown["azp"] == "app"
    assert claims.summary == "scope User.Read Mail.Send"


@pytest.mark.parametrize(
    "token",
    [
        "2YotnFZFEjr1zCsicMWpAA",  # RFC 6749's example: opaque
        "a.b",
        "a.b.c.d.e",  # a JWE: nothing readable without its key
        f"{part({})}.!!!.sig",
        f"{part({})}.{part([1, 2])}.sig",  # not an object
        f"{part({})}.{base64.urlsafe_b64encode(b'{not json').decode()}.sig",
        f"{part({})}.{part({'sub': 'x' * 20000})}.sig",  # too long to be worth reading
    ],
    ids=["opaque", "two-parts", "jwe", "not-base64", "array", "not-json", "huge"],
)
def test_what_is_not_a_readable_jwt_is_opaque(token: str) -> None:
    assert read_claims(token) is None
    assert shown(read_claims(token)) == OPAQUE


def test_odd_claim_values_are_left_out_or_cut() -> None:
    payload = {"iss": "i" * 500, "sub": {"nested": 1}, "aud": [1, "api"], "exp": True, "iat": 1.5}
    claims = read_claims(f"{part({})}.{part(payload)}.sig")
    assert claims is not None
    assert claims.shown == {"verified": False, "iss": "i" * 199 + "…", "aud": ["api"], "iat": 1.5}
    assert claims.audiences == ("api",)
    json.dumps(claims.shown, allow_nan=False)  # JSON-safe, as flow metadata must be


def test_a_token_reads_its_claims_once() -> None:
    token = Token(jwt.encode(CLAIMS, "k" * 32, algorithm="HS256"), "Bearer", 0.0, 60.0)
    assert token.claims is token.claims
    assert shown(token.claims) is not shown(token.claims)  # each flow gets its own copy


def test_a_payload_nested_too_deep_is_opaque_not_an_error() -> None:
    deep = base64.urlsafe_b64encode(b"[" * 50_000 + b"]" * 50_000).decode()
    assert read_claims(f"{part({})}.{deep[:16000]}.sig") is None


def test_text_that_could_not_be_saved_with_the_flow_is_replaced() -> None:
    payload = part({"sub": "a\ud800b"})  # JSON's escape of a lone surrogate
    claims = read_claims(f"{part({})}.{payload}.sig")
    assert claims is not None
    assert claims.shown["sub"] == "a?b"
    json.dumps(claims.shown).encode("utf-8")  # saved as UTF-8, as tnetstring does
