"""Where tokens outlive the process: a small store interface and its diskcache implementation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Protocol

import diskcache

from .credentials import TokenGrant
from .tokens import Token

logger = logging.getLogger(__name__)

_KEY_VERSION = "v1"
_HMAC_KEY_ENTRY = "store/hmac-key"
_LOCK = "lock/"


class TokenStore(Protocol):
    """Persists tokens by cache key. A failing store logs and goes on; it never fails a request."""

    def cache_key(self, grant: TokenGrant) -> str: ...

    async def load(self, key: str) -> Token | None: ...

    async def save(self, key: str, token: Token, ttl: float) -> None: ...

    async def delete_if(self, key: str, access_token: str) -> None:
        """Deletes the entry only while it still holds `access_token`."""
        ...

    async def delete(self, key: str) -> None: ...

    async def try_lock(self, key: str, owner: str, lease: float) -> bool:
        """Takes the cross-process lock on `key` for `lease` seconds; False if another holds it."""
        ...

    async def unlock(self, key: str, owner: str) -> None:
        """Releases the lock on `key` if `owner` still holds it (its lease may have run out)."""
        ...

    def close(self) -> None: ...


def derive_cache_key(hmac_key: bytes, grant: TokenGrant) -> str:
    """`token/v1/<backend>/<hmac>`: everything that decides which token is issued, secret included.

    The HMAC is keyed with a random per-store key, so the secret can be neither read from the key
    nor guessed offline from it; any change of URL, client id, secret or key, scope, audience,
    resource, extra parameter or header, or auth method changes the key.
    """
    material = json.dumps(grant.credentials.identity()).encode()
    digest = hmac.new(hmac_key, material, hashlib.sha256).hexdigest()
    return f"token/{_KEY_VERSION}/{grant.backend}/{digest}"


def _token_to_json(token: Token) -> str:
    return json.dumps(
        {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "issued_at": token.issued_at,
            "lifetime": token.lifetime,
            "scope": token.scope,
        }
    )


def _token_from_json(text: str) -> Token:
    record = json.loads(text)
    return Token(
        access_token=str(record["access_token"]),
        token_type=str(record["token_type"]),
        issued_at=float(record["issued_at"]),
        lifetime=float(record["lifetime"]),
        scope=record.get("scope"),
    )


def _private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the same mode.
    database = directory / "cache.db"
    fd = os.open(database, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(database, 0o600)


class DiskTokenStore:
    """Tokens in a diskcache directory (0700, files 0600), shared safely by several processes.

    diskcache is synchronous SQLite, so every call from the event loop runs in a worker thread.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        _private_directory(directory)
        # Values stay inside SQLite (no side files) and are JSON text, never pickles.
        self._cache = diskcache.Cache(str(directory), disk_min_file_size=1 << 20)
        self._cache.add(_HMAC_KEY_ENTRY, secrets.token_bytes(32))
        self._hmac_key: bytes = self._cache.get(_HMAC_KEY_ENTRY)

    def cache_key(self, grant: TokenGrant) -> str:
        return derive_cache_key(self._hmac_key, grant)

    async def load(self, key: str) -> Token | None:
        try:
            text = await asyncio.to_thread(self._cache.get, key)
            return None if text is None else _token_from_json(text)
        except Exception as e:  # a broken cache must never fail a request
            logger.warning("token cache %s: cannot read (%s)", self.directory, type(e).__name__)
            return None

    async def save(self, key: str, token: Token, ttl: float) -> None:
        try:
            await asyncio.to_thread(self._cache.set, key, _token_to_json(token), expire=ttl)
        except Exception as e:  # a broken cache must never fail a request
            logger.warning("token cache %s: cannot write (%s)", self.directory, type(e).__name__)

    async def delete_if(self, key: str, access_token: str) -> None:
        try:
            await asyncio.to_thread(self._delete_if, key, access_token)
        except Exception as e:  # a broken cache must never fail a request
            logger.warning("token cache %s: cannot delete (%s)", self.directory, type(e).__name__)

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._cache.delete, key)
        except Exception as e:  # a broken cache must never fail a request
            logger.warning("token cache %s: cannot delete (%s)", self.directory, type(e).__name__)

    def _delete_if(self, key: str, access_token: str) -> None:
        with self._cache.transact():
            text = self._cache.get(key)
            if text is not None and _token_from_json(text).access_token == access_token:
                self._cache.delete(key)

    # diskcache.Lock is not used: its release deletes whoever's lock is there (no owner check),
    # and its acquire spins in a blocking sleep loop.
    async def try_lock(self, key: str, owner: str, lease: float) -> bool:
        try:
            added: bool = await asyncio.to_thread(self._cache.add, _LOCK + key, owner, expire=lease)
            return added
        except Exception as e:  # a broken cache must never fail a request: fetch unlocked
            logger.warning("token cache %s: cannot lock (%s)", self.directory, type(e).__name__)
            return True

    async def unlock(self, key: str, owner: str) -> None:
        try:
            await asyncio.to_thread(self._unlock, _LOCK + key, owner)
        except Exception as e:  # a broken cache must never fail a request
            logger.warning("token cache %s: cannot unlock (%s)", self.directory, type(e).__name__)

    def _unlock(self, lock_key: str, owner: str) -> None:
        with self._cache.transact():
            if self._cache.get(lock_key) == owner:
                self._cache.delete(lock_key)

    def close(self) -> None:
        self._cache.close()
