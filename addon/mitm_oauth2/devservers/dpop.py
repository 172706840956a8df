"""DPoP proofs as the dev servers check them (RFC 9449 §4.3): a JWT of type dpop+jwt, signed
with the public key it carries, for this method and URL, recent, never seen before; at the
backend also for this access token (`ath`) and by the key the token is bound to (`jkt`).
Written apart from the addon's own code on purpose: it is what that code is tested against."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm
from jwt.algorithms import RSAAlgorithm

ALGORITHMS = ("ES256", "RS256", "PS256")
MAX_AGE = 60  # seconds a proof's iat may lie in the past (or the future)
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


class ProofError(ValueError):
    """Why the proof is refused (safe to answer with)."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: dict[str, Any]) -> str:
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or any(name not in jwk for name in members):
        raise ProofError("jwk is not a public EC or RSA key")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    return b64(hashlib.sha256(canonical.encode()).digest())


def verify(
    proof: str, method: str, url: str, *, access_token: str | None = None
) -> tuple[dict[str, Any], str]:
    """The proof's claims and its key's thumbprint; ProofError when it does not hold."""
    try:
        header = jwt.get_unverified_header(proof)
    except jwt.PyJWTError as e:
        raise ProofError(f"malformed DPoP proof ({e})") from e
    if header.get("typ") != "dpop+jwt" or header.get("alg") not in ALGORITHMS:
        raise ProofError("DPoP proof must be typ dpop+jwt with an asymmetric alg")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or "d" in jwk:
        raise ProofError("DPoP proof must carry the public key only")
    algorithm = ECAlgorithm if jwk.get("kty") == "EC" else RSAAlgorithm
    try:
        key = algorithm.from_jwk(json.dumps(jwk))
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ProofError("DPoP proof must carry the public key only")
        claims: dict[str, Any] = jwt.decode(
            proof,
            key,
            algorithms=[header["alg"]],
            options={"require": ["jti", "htm", "htu", "iat"]},
        )
    except (jwt.PyJWTError, ValueError) as e:
        raise ProofError(f"DPoP proof rejected ({e})") from e
    if claims["htm"] != method:
        raise ProofError(f"DPoP proof htm {claims['htm']!r} is not {method}")
    if claims["htu"] != url:
        raise ProofError(f"DPoP proof htu {claims['htu']!r} is not {url}")
    if abs(time.time() - float(claims["iat"])) > MAX_AGE:
        raise ProofError("DPoP proof iat is not recent")
    if access_token is not None:
        expected = b64(hashlib.sha256(access_token.encode()).digest())
        if claims.get("ath") != expected:
            raise ProofError("DPoP proof ath is not this access token's")
    return claims, thumbprint(jwk)
