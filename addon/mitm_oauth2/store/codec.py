"""Tokens (and users' refresh tokens) as stored bytes: JSON, sealed with AES-GCM when the
operator gives a store key."""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..model.credentials import DpopKey
from ..model.credentials import Secret
from ..model.errors import UnreadableEntry
from ..model.token import Token

_SEALED = b"aesgcm1:"
_NONCE_BYTES = 12
MIN_KEY_CHARS = 16


def _derive(key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key.encode())


class TokenCodec:
    """Encodes tokens for a store. With a key, tokens are encrypted and bound to their cache
    key (a sealed value moved under another key does not open), and the cache-key HMAC key is
    derived from it too, so every process given the same key computes the same cache keys.

    A token bound to a DPoP key the proxy generated is stored with that key: without it, the
    other processes could not use the token (a key file's is never stored: each has the file).
    """

    def __init__(self, key: str | None = None) -> None:
        self._aead = None if key is None else AESGCM(_derive(key, b"mitm-oauth2 token sealing"))
        self.hmac_key = None if key is None else _derive(key, b"mitm-oauth2 cache key")

    @property
    def sealed(self) -> bool:
        return self._aead is not None

    def encode(self, token: Token, cache_key: str) -> bytes:
        record: dict[str, object] = {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "issued_at": token.issued_at,
            "lifetime": token.lifetime,
            "scope": token.scope,
        }
        key = token.dpop_key
        if key is not None and key.generated:
            record["dpop_key"] = {
                "pem": key.pem.reveal(),
                "alg": key.algorithm,
                "jwk": dict(key.public_jwk),
                "jkt": key.thumbprint,
            }
        return self._seal(json.dumps(record).encode(), cache_key)

    def encode_refresh(self, refresh_token: str, cache_key: str) -> bytes:
        """A user's refresh token, sealed like a token (and bound to its own key)."""
        return self._seal(json.dumps({"refresh_token": refresh_token}).encode(), cache_key)

    def read_refresh(self, data: bytes | str | None, cache_key: str) -> str | None:
        """The refresh token in a stored value; None for none, or one we cannot read (the
        configured refresh token is used then)."""
        if data is None:
            return None
        try:
            record = json.loads(self._open(data, cache_key))
            value = record["refresh_token"]
        except (UnreadableEntry, ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, str) and value else None

    def _seal(self, plain: bytes, cache_key: str) -> bytes:
        if self._aead is None:
            return plain
        nonce = os.urandom(_NONCE_BYTES)
        return _SEALED + nonce + self._aead.encrypt(nonce, plain, cache_key.encode())

    def _open(self, data: bytes | str, cache_key: str) -> bytes:
        raw = data.encode() if isinstance(data, str) else data
        if self._aead is not None:
            if not raw.startswith(_SEALED):
                raise UnreadableEntry("not sealed with the store key")
            sealed = raw[len(_SEALED) :]
            nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
            try:
                return self._aead.decrypt(nonce, ciphertext, cache_key.encode())
            except InvalidTag as e:
                raise UnreadableEntry("sealed with another store key") from e
        if raw.startswith(_SEALED):
            raise UnreadableEntry("sealed, and no store key is set")
        return raw

    def read(self, data: bytes | str | None, cache_key: str) -> Token | None:
        """The token in a stored value; None for no value or one we cannot read (the next
        token saved replaces it)."""
        if data is None:
            return None
        try:
            return self.decode(data, cache_key)
        except UnreadableEntry:
            return None

    def decode(self, data: bytes | str, cache_key: str) -> Token:
        """The token in `data`; raises UnreadableEntry for anything else."""
        raw = self._open(data, cache_key)
        try:
            record = json.loads(raw)
            return Token(
                access_token=str(record["access_token"]),
                token_type=str(record["token_type"]),
                issued_at=float(record["issued_at"]),
                lifetime=float(record["lifetime"]),
                scope=record.get("scope"),
                dpop_key=_dpop_key(record.get("dpop_key")),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise UnreadableEntry("not a token record") from e


def _dpop_key(stored: object) -> DpopKey | None:
    if stored is None:
        return None
    if not isinstance(stored, dict) or not isinstance(jwk := stored["jwk"], dict):
        raise TypeError("not a DPoP key record")
    return DpopKey(
        pem=Secret(str(stored["pem"])),
        algorithm=str(stored["alg"]),
        public_jwk=tuple(sorted((str(name), str(value)) for name, value in jwk.items())),
        thumbprint=str(stored["jkt"]),
        generated=True,
    )
