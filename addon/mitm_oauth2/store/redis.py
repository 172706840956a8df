"""Tokens in Redis, shared by every proxy of a fleet: one token request per credential."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.lock import Lock
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import LockNotOwnedError

from ..model.credentials import TokenGrant
from ..model.errors import UnreadableEntry
from ..model.token import Token
from .base import CacheKeys
from .base import refresh_key
from .codec import TokenCodec
from .topology import RedisTarget
from .topology import Topology

PREFIX = "mitm-oauth2:"
_HMAC_KEY = PREFIX + "hmac-key"

# Deletes the key only while it holds exactly the value read before: a token renewed meanwhile,
# by any proxy of the fleet, is kept (Redis runs a script atomically).
_DELETE_IF_UNCHANGED = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class RedisTokenStore:
    """Tokens under `mitm-oauth2:token/v1/<backend>/{<hmac>}` with a TTL of their remaining
    life, a user's refresh token under `mitm-oauth2:refresh/v1/...` without one; the lock is
    redis-py's Lock (SET NX PX with an owner token, released by its owner only) under the
    token's name after `mitm-oauth2:lock/`. The braces are a hash tag: in a Cluster, a token,
    its refresh token and its lock live in one slot, so they move together and the scripts on
    them run.

    Raises when Redis fails: the guard around it decides what that means for the request.
    """

    def __init__(
        self, client: redis.asyncio.Redis | RedisCluster, where: str, codec: TokenCodec
    ) -> None:
        self._redis = client
        self.where = where
        self._codec = codec
        self._hmac_key = codec.hmac_key
        self._keys = None if self._hmac_key is None else _keys(self._hmac_key)
        self._delete_if_unchanged = client.register_script(_DELETE_IF_UNCHANGED)

    @classmethod
    def connect_to(
        cls,
        target: RedisTarget,
        password: str | None,
        timeout: float,
        codec: TokenCodec,
        ca_file: Path | None = None,
        sentinel_password: str | None = None,
    ) -> RedisTokenStore:
        """Nothing is connected until the first call."""
        client = _client(target, password, timeout, ca_file, sentinel_password)
        return cls(client, target.where, codec)

    async def connected(self) -> RedisTokenStore:
        """This store once Redis answers and the fleet's key is settled (the guard's opener,
        run again after every failure)."""
        await self._redis.ping()
        if self._codec.hmac_key is None:
            await self._agree_on_fleet_key()
        return self

    async def _agree_on_fleet_key(self) -> Callable[[TokenGrant], str]:
        """Cache keys by the HMAC key that every proxy on this Redis uses.

        The first proxy to ask publishes it; a proxy that knew one before Redis lost its data
        publishes that one again, so proxies started before and after the loss still agree.
        """
        proposed = self._hmac_key or secrets.token_bytes(32)
        await self._redis.set(_HMAC_KEY, proposed, nx=True)
        stored = await self._redis.get(_HMAC_KEY)
        if not isinstance(stored, bytes) or len(stored) != 32:
            raise UnreadableEntry(f"{_HMAC_KEY} is not a 32-byte key")
        if stored != self._hmac_key or self._keys is None:
            self._hmac_key = stored
            self._keys = _keys(stored)
        return self._keys

    async def _key(self, grant: TokenGrant) -> str:
        keys = self._keys if self._keys is not None else await self._agree_on_fleet_key()
        return keys(grant)

    async def load(self, grant: TokenGrant) -> Token | None:
        key = await self._key(grant)
        return self._codec.read(await self._redis.get(key), key)

    async def save(self, grant: TokenGrant, token: Token, ttl: float) -> None:
        key = await self._key(grant)
        await self._redis.set(key, self._codec.encode(token, key), px=max(1, int(ttl * 1000)))

    async def delete_if(self, grant: TokenGrant, access_token: str) -> None:
        key = await self._key(grant)
        data = await self._redis.get(key)
        stored = self._codec.read(data, key)
        if data is not None and stored is not None and stored.access_token == access_token:
            await self._delete_if_unchanged(keys=[key], args=[data])

    async def delete(self, grant: TokenGrant) -> None:
        await self._redis.delete(await self._key(grant))

    async def load_refresh(self, grant: TokenGrant) -> str | None:
        key = refresh_key(await self._key(grant))
        return self._codec.read_refresh(await self._redis.get(key), key)

    async def save_refresh(self, grant: TokenGrant, refresh_token: str) -> None:
        key = refresh_key(await self._key(grant))
        await self._redis.set(key, self._codec.encode_refresh(refresh_token, key))

    async def delete_refresh(self, grant: TokenGrant) -> None:
        await self._redis.delete(refresh_key(await self._key(grant)))

    async def _lock(self, grant: TokenGrant, lease: float | None) -> Lock:
        name = PREFIX + "lock/" + (await self._key(grant)).removeprefix(PREFIX)
        return self._redis.lock(name, timeout=lease, thread_local=False)

    async def try_lock(self, grant: TokenGrant, owner: str, lease: float) -> bool:
        lock = await self._lock(grant, lease)
        return bool(await lock.acquire(blocking=False, token=owner))

    async def unlock(self, grant: TokenGrant, owner: str) -> None:
        lock = await self._lock(grant, None)
        # Not ours any more when the lease ran out (another proxy may hold it now): left alone.
        with contextlib.suppress(LockNotOwnedError):
            await lock.do_release(owner.encode())

    async def aclose(self) -> None:
        await self._redis.aclose()


def _keys(hmac_key: bytes) -> Callable[[TokenGrant], str]:
    return CacheKeys(hmac_key, PREFIX, hash_tag=True)


def _client(
    target: RedisTarget,
    password: str | None,
    timeout: float,
    ca_file: Path | None,
    sentinel_password: str | None,
) -> redis.asyncio.Redis | RedisCluster:
    """redis-py's client for the topology: it finds the primary (Sentinel) or the node that
    holds a key's slot (Cluster) itself, and again after a failover or a slot's move."""
    options: dict[str, Any] = {
        "username": target.username,
        "password": password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # One immediate retry replaces a pooled connection that died with a restarted Redis;
        # more, or a backoff, would only stretch a wait the guard cuts short anyway.
        "retry": Retry(NoBackoff(), 1),
    }
    # TLS verifies the servers against the system's roots, or against `ca_file`.
    tls: dict[str, Any] = {} if ca_file is None else {"ssl_ca_certs": str(ca_file)}
    if target.topology is Topology.SERVER:
        return redis.asyncio.Redis.from_url(target.url, **options, **tls)
    if target.tls:
        tls["ssl"] = True
    if target.topology is Topology.CLUSTER:
        nodes = [ClusterNode(host, port) for host, port in target.nodes]
        return RedisCluster(startup_nodes=nodes, **options, **tls)
    assert target.service is not None  # topology.redis_target requires one
    # The Sentinels are asked over TLS when the primary is, with their own password if any
    # (Sentinels often have none where the data nodes do).
    asked = {**options, "username": None, "password": sentinel_password}
    # redis-py leaves Sentinel's constructor untyped.
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.nodes), sentinel_kwargs={**asked, **tls}, **options, **tls
    )
    primary: redis.asyncio.Redis = sentinels.master_for(target.service, db=target.db)
    return primary
