"""DPoP proofs (RFC 9449): a JWT signed with the proxy's DPoP key for one HTTP request, which
binds the token to that key. One for each token request (§5) and each request to the backend
(§7), never reused: a fresh `jti` every time."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm
from jwt.algorithms import RSAAlgorithm

from ..model.credentials import DpopKey
from ..model.credentials import Secret

DPOP_TYP = "dpop+jwt"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_dpop_key(pem: bytes) -> DpopKey:
    """ES256 for a P-256 key, RS256 for RSA; ValueError for anything else."""
    key = serialization.load_pem_private_key(pem, password=None)
    members: tuple[str, ...]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name != "secp256r1":
            raise ValueError("an EC DPoP key must be P-256 (ES256)")
        algorithm, jwk = "ES256", ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        members = ("crv", "kty", "x", "y")
    elif isinstance(key, rsa.RSAPrivateKey):
        algorithm, jwk = "RS256", RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        members = ("e", "kty", "n")
    else:
        raise ValueError("a DPoP key must be EC P-256 or RSA")
    public = {name: str(jwk[name]) for name in members}
    clean = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem_text = Secret(clean.decode("ascii"))
    return DpopKey(pem_text, algorithm, tuple(sorted(public.items())), jwk_thumbprint(public))


def generate_dpop_key() -> DpopKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return dataclasses.replace(load_dpop_key(pem), generated=True)


@functools.cache
def process_dpop_key(backend: str) -> DpopKey:
    """The key this process made for `backend`: made once, so that a re-read configuration
    keeps it (and the token bound to it). A token this process requests is bound to it; one
    another process requested comes with its own key (see DpopKey)."""
    return generate_dpop_key()


def jwk_thumbprint(public_jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, in lexicographic order, no whitespace."""
    canonical = json.dumps(public_jwk, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


class Nonces:
    """The last DPoP nonce each server gave (RFC 9449 §8, §9), by origin; bounded, however many
    servers a configuration names."""

    def __init__(self, limit: int = 256) -> None:
        self._limit = limit
        self._by_origin: dict[str, str] = {}

    def get(self, url: str) -> str | None:
        return self._by_origin.get(origin(url))

    def keep(self, url: str, nonce: str) -> None:
        key = origin(url)
        if len(self._by_origin) >= self._limit and key not in self._by_origin:
            self._by_origin.clear()
        self._by_origin[key] = nonce


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def htu(url: str) -> str:
    """RFC 9449 §4.2: the request's URI without query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def access_token_hash(access_token: str) -> str:
    """`ath`: base64url SHA-256 of the access token (ASCII)."""
    return _b64(hashlib.sha256(access_token.encode("ascii")).digest())


def proof(
    key: DpopKey,
    method: str,
    url: str,
    now: float,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
) -> str:
    """A DPoP proof for `method` `url` at `now`; with `access_token` for a resource request
    (`ath`), with the server's `nonce` when it asked for one (§8, §9)."""
    claims: dict[str, Any] = {
        "jti": os.urandom(16).hex(),
        "htm": method.upper(),
        "htu": htu(url),
        "iat": int(now),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    signer = _signer(key.pem.reveal(), key.algorithm, key.public_jwk)
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{signer.header}.{payload}"
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{_b64(signature)}"


@dataclasses.dataclass(frozen=True)
class _Signer:
    """What every proof of one key shares: the encoded JWS header (only `typ`, `alg` and the
    public JWK) and the signing, by PyJWT's algorithm for the key."""

    header: str
    sign: Callable[[bytes], bytes]


@functools.lru_cache(maxsize=64)
def _signer(pem: str, algorithm: str, public_jwk: tuple[tuple[str, str], ...]) -> _Signer:
    # A proof is signed for every request to a DPoP backend: the key is parsed and the header
    # encoded once, not each time (jwt.encode would do both again for every proof).
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    sign: Callable[[bytes], bytes]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sign = functools.partial(ECAlgorithm(ECAlgorithm.SHA256).sign, key=key)
    else:
        assert isinstance(key, rsa.RSAPrivateKey)  # load_dpop_key allows no other
        sign = functools.partial(RSAAlgorithm(RSAAlgorithm.SHA256).sign, key=key)
    header = {"alg": algorithm, "typ": DPOP_TYP, "jwk": dict(public_jwk)}
    return _Signer(_b64(json.dumps(header, separators=(",", ":")).encode()), sign)
