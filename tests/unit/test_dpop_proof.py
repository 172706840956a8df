"""DPoP proofs (RFC 9449 §4): verifiable with the public key they carry, for the request's
method and URL without query or fragment, a fresh jti each, ath of the token, the server's
nonce; the key's thumbprint as RFC 7638 computes it."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm
from jwt.algorithms import RSAAlgorithm

from mitm_oauth2.client.dpop import generate_dpop_key
from mitm_oauth2.client.dpop import htu
from mitm_oauth2.client.dpop import jwk_thumbprint
from mitm_oauth2.client.dpop import load_dpop_key
from mitm_oauth2.client.dpop import proof
from tests.support.key_material import private_pem

NOW = 1_800_000_000.0


def verified(token: str) -> tuple[dict[str, object], dict[str, object]]:
    header = jwt.get_unverified_header(token)
    jwk = json.dumps(header["jwk"])
    public = ECAlgorithm.from_jwk(jwk) if header["alg"] == "ES256" else RSAAlgorithm.from_jwk(jwk)
    claims = jwt.decode(token, public, algorithms=[header["alg"]], options={"verify_iat": False})
    return header, claims


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_a_proof_for_a_token_request(kind: str) -> None:
    raw = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else rsa.generate_private_key(65537, 2048)
    )
    key = load_dpop_key(private_pem(raw))
    header, claims = verified(proof(key, "post", "https://idp.test/token?x=1#f", NOW))
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == ("ES256" if kind == "ec" else "RS256")
    assert "d" not in header["jwk"]  # the public key only
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://idp.test/token"
    assert claims["iat"] == int(NOW)
    assert "ath" not in claims
    assert "nonce" not in claims


def test_a_proof_for_a_resource_request_with_a_nonce() -> None:
    key = generate_dpop_key()
    _, claims = verified(
        proof(key, "GET", "https://api.test/things", NOW, access_token="tok", nonce="n-1")
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"tok").digest()).rstrip(b"=").decode()
    assert claims["ath"] == expected
    assert claims["nonce"] == "n-1"


def test_every_proof_is_new() -> None:
    key = generate_dpop_key()
    first, second = (verified(proof(key, "GET", "https://api.test/", NOW))[1] for _ in range(2))
    assert first["jti"] != second["jti"]


def test_the_thumbprint_is_rfc_7638s() -> None:
    """RFC 7638 §3.1's example key gives its published thumbprint."""
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJEC"
        "PebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
        "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
        "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    thumbprint = jwk_thumbprint({"n": n, "kty": "RSA", "e": "AQAB"})
    assert thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_keys_thumbprint_is_that_of_its_public_jwk() -> None:
    key = generate_dpop_key()
    assert key.thumbprint == jwk_thumbprint(dict(key.public_jwk))
    assert {name for name, _ in key.public_jwk} == {"crv", "kty", "x", "y"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.test/a/b?c=d", "https://api.test/a/b"),
        ("https://api.test:8443/a#x", "https://api.test:8443/a"),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9/"),
    ],
)
def test_htu_drops_query_and_fragment(url: str, expected: str) -> None:
    assert htu(url) == expected


def test_other_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="P-256"):
        load_dpop_key(private_pem(ec.generate_private_key(ec.SECP384R1())))
