"""Where tokens outlive the process and are shared: the store interface and the cache key.

Implementations: `disk` (one machine), `redis` (a fleet), `memory` (the
fallback while either fails); `guard` puts timeouts and that fallback around them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Protocol

from ..model.credentials import TokenGrant
from ..model.token import Token

_KEY_VERSION = "v1"

# Cache keys a store remembers: deriving one again costs microseconds beside the store's own I/O,
# and token exchange makes a grant per caller, so a flood of callers must not grow the memo.
REMEMBERED_KEYS = 1024


class TokenStore(Protocol):
    """Persists tokens per grant (and a user's refresh token), and the lease lock that makes one
    process ask for a token.

    A raw store raises when it fails; `guard.GuardedStore` turns that into a fallback, so
    what the broker holds never fails a request.
    """

    where: str  # what operators know it by, for log lines (never a password)

    async def load(self, grant: TokenGrant) -> Token | None: ...

    async def save(self, grant: TokenGrant, token: Token, ttl: float) -> None: ...

    async def delete_if(self, grant: TokenGrant, access_token: str) -> None:
        """Deletes the entry only while it still holds `access_token`."""
        ...

    async def delete(self, grant: TokenGrant) -> None: ...

    async def load_refresh(self, grant: TokenGrant) -> str | None:
        """The user's newest refresh token (refresh_token and password grants), if stored."""
        ...

    async def save_refresh(self, grant: TokenGrant, refresh_token: str) -> None:
        """Keeps the refresh token the server rotated to, without expiry: the grant's only one."""
        ...

    async def delete_refresh(self, grant: TokenGrant) -> None: ...

    async def try_lock(self, grant: TokenGrant, owner: str, lease: float) -> bool:
        """Takes the lock on the grant's token for `lease` seconds; False if another holds it."""
        ...

    async def unlock(self, grant: TokenGrant, owner: str) -> None:
        """Releases the lock if `owner` still holds it (its lease may have run out)."""
        ...

    async def aclose(self) -> None: ...


def derive_cache_key(hmac_key: bytes, grant: TokenGrant, hash_tag: bool = False) -> str:
    """`token/v1/<backend>/<hmac>`: everything that decides which token is issued, secret included;
    with `hash_tag`, `{<hmac>}` (Redis Cluster places a key by what is in braces).

    The HMAC is keyed with a key of the store's (random, or derived from the operator's store
    key), so the secret can be neither read from the key nor guessed offline from it; any change
    of URL, client id, secret or key, scope, audience, resource, extra parameter or header, or
    auth method changes the key.
    """
    material = json.dumps(grant.credentials.identity(grant.subject)).encode()
    digest = hmac.new(hmac_key, material, hashlib.sha256).hexdigest()
    if hash_tag:
        digest = "{" + digest + "}"
    return f"token/{_KEY_VERSION}/{grant.backend}/{digest}"


def refresh_key(token_key: str) -> str:
    """Where a grant's refresh token is kept: `refresh/v1/...`, beside its token's key (the
    same HMAC, so the same Cluster slot as the token and its lock)."""
    return token_key.replace("token/", "refresh/", 1)


class CacheKeys:
    """`prefix` + `derive_cache_key` with `hmac_key`, remembered for the latest grants.

    A dict, not functools.lru_cache: that keeps an argument tuple per grant, one more object
    per token-exchange caller for the garbage collector to walk in each full collection.
    """

    def __init__(self, hmac_key: bytes, prefix: str = "", hash_tag: bool = False) -> None:
        self._hmac_key = hmac_key
        self._prefix = prefix
        self._hash_tag = hash_tag
        self._remembered: dict[TokenGrant, str] = {}

    def __call__(self, grant: TokenGrant) -> str:
        key = self._remembered.get(grant)
        if key is None:
            if len(self._remembered) >= REMEMBERED_KEYS:
                del self._remembered[next(iter(self._remembered))]  # the oldest
            key = self._prefix + derive_cache_key(self._hmac_key, grant, self._hash_tag)
            self._remembered[grant] = key
        return key

    @property
    def remembered(self) -> int:
        """How many keys are remembered (not `__len__`: an empty memo must not be falsy)."""
        return len(self._remembered)
