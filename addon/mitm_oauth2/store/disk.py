"""Tokens in a diskcache directory on one machine, shared safely by its processes."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from typing import TypeVar

import diskcache

from ..model.credentials import TokenGrant
from ..model.token import Token
from .base import CacheKeys
from .base import refresh_key
from .codec import TokenCodec

T = TypeVar("T")

_HMAC_KEY_ENTRY = "store/hmac-key"
_LOCK = "lock/"


def _private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the same mode.
    database = directory / "cache.db"
    fd = os.open(database, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(database, 0o600)


def _store_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="oauth2-token-cache")


class DiskTokenStore:
    """Tokens in a diskcache directory (0700, files 0600). Raises when the disk fails.

    diskcache is synchronous SQLite, so opening and every call run in a thread of the store's
    own: one, as diskcache opens a connection (with its page cache) per thread that calls it,
    and the calls are short and few (the broker holds the tokens it uses).
    """

    def __init__(
        self,
        cache: diskcache.Cache,
        directory: Path,
        codec: TokenCodec,
        thread: ThreadPoolExecutor | None = None,
    ) -> None:
        self._cache = cache
        self._thread = thread or _store_thread()
        self.where = f"token cache {directory}"
        self.directory = directory
        self._codec = codec
        # Random per directory unless the operator's store key sets it (see TokenCodec).
        if codec.hmac_key is None:
            self._cache.add(_HMAC_KEY_ENTRY, secrets.token_bytes(32))
        self.cache_key = CacheKeys(codec.hmac_key or self._cache.get(_HMAC_KEY_ENTRY))

    @classmethod
    def open_sync(
        cls,
        directory: Path,
        codec: TokenCodec | None = None,
        thread: ThreadPoolExecutor | None = None,
    ) -> DiskTokenStore:
        _private_directory(directory)
        # Values stay inside SQLite (no side files) and are bytes we encode, never pickles.
        # SQLite's page cache 1 MiB and no memory map: the broker holds the tokens it uses, so
        # few reads come here, and diskcache's defaults (a 32 MiB cache, a 64 MiB map) grew the
        # process with every token saved (a caller's each, with token exchange).
        cache = diskcache.Cache(
            str(directory), disk_min_file_size=1 << 20, sqlite_cache_size=256, sqlite_mmap_size=0
        )
        try:
            return cls(cache, directory, codec or TokenCodec(), thread)
        except BaseException:
            cache.close()
            raise

    @classmethod
    async def open(cls, directory: Path, codec: TokenCodec | None = None) -> DiskTokenStore:
        thread = _store_thread()
        opening = functools.partial(cls.open_sync, directory, codec, thread)
        try:
            return await asyncio.get_running_loop().run_in_executor(thread, opening)
        except BaseException:
            thread.shutdown(wait=False)
            raise

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def load(self, grant: TokenGrant) -> Token | None:
        key = self.cache_key(grant)
        return self._codec.read(await self._call(self._cache.get, key), key)

    async def save(self, grant: TokenGrant, token: Token, ttl: float) -> None:
        key = self.cache_key(grant)
        await self._call(self._cache.set, key, self._codec.encode(token, key), expire=ttl)

    async def delete_if(self, grant: TokenGrant, access_token: str) -> None:
        await self._call(self._delete_if, self.cache_key(grant), access_token)

    async def delete(self, grant: TokenGrant) -> None:
        await self._call(self._cache.delete, self.cache_key(grant))

    async def load_refresh(self, grant: TokenGrant) -> str | None:
        key = refresh_key(self.cache_key(grant))
        return self._codec.read_refresh(await self._call(self._cache.get, key), key)

    async def save_refresh(self, grant: TokenGrant, refresh_token: str) -> None:
        key = refresh_key(self.cache_key(grant))
        await self._call(self._cache.set, key, self._codec.encode_refresh(refresh_token, key))

    async def delete_refresh(self, grant: TokenGrant) -> None:
        await self._call(self._cache.delete, refresh_key(self.cache_key(grant)))

    def _delete_if(self, key: str, access_token: str) -> None:
        with self._cache.transact():
            stored = self._codec.read(self._cache.get(key), key)
            if stored is not None and stored.access_token == access_token:
                self._cache.delete(key)

    # diskcache.Lock is not used: its release deletes whoever's lock is there (no owner check),
    # and its acquire spins in a blocking sleep loop.
    async def try_lock(self, grant: TokenGrant, owner: str, lease: float) -> bool:
        lock_key = _LOCK + self.cache_key(grant)
        added: bool = await self._call(self._cache.add, lock_key, owner, expire=lease)
        return added

    async def unlock(self, grant: TokenGrant, owner: str) -> None:
        await self._call(self._unlock, _LOCK + self.cache_key(grant), owner)

    def _unlock(self, lock_key: str, owner: str) -> None:
        with self._cache.transact():
            if self._cache.get(lock_key) == owner:
                self._cache.delete(lock_key)

    def close(self) -> None:
        """Closes the calling thread's connection (see aclose), and the store's thread."""
        self._cache.close()
        self._thread.shutdown(wait=False)

    async def aclose(self) -> None:
        await self._call(self._cache.close)  # the connection is the store thread's
        self._thread.shutdown(wait=False)
