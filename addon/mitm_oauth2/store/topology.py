"""Which Redis a fleet shares, from oauth2_store's URL: one server, a primary that Sentinels watch
and fail over, or a Cluster. Valkey is the same in all three."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import unquote
from urllib.parse import urlsplit

from ..model.errors import ConfigError


class Topology(enum.StrEnum):
    SERVER = "server"
    SENTINEL = "sentinel"  # redis+sentinel://host:port,host:port/SERVICE/DB
    CLUSTER = "cluster"  # redis+cluster://host:port,host:port


# The ports that redis-cli, redis-py and the servers' sample configurations assume.
_DEFAULT_PORT = {Topology.SERVER: 6379, Topology.SENTINEL: 26379, Topology.CLUSTER: 6379}
SCHEMES = {
    f"{tls}{suffix}": topology
    for tls in ("redis", "rediss")
    for suffix, topology in (
        ("", Topology.SERVER),
        ("+sentinel", Topology.SENTINEL),
        ("+cluster", Topology.CLUSTER),
    )
}
_EXAMPLES = (
    "redis://host:6379/0, redis+sentinel://host1:26379,host2:26379/SERVICE/0 or "
    "redis+cluster://host1:7000,host2:7001 (rediss... for TLS)"
)


@dataclass(frozen=True)
class RedisTarget:
    """`url` as given (it holds no password); `nodes`: the server, the Sentinels, or the Cluster
    nodes to start from (the others are found); `service`: the name the Sentinels monitor.
    `where`: what logs and the status say (no user)."""

    url: str
    topology: Topology
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    service: str | None = None
    db: int = 0
    username: str | None = None  # an ACL user (its password comes from the environment)

    @property
    def where(self) -> str:
        scheme = self.url.partition("://")[0]
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        if self.topology is Topology.SENTINEL:
            return f"token store {scheme}://{hosts}/{self.service}/{self.db}"
        if self.topology is Topology.CLUSTER:
            return f"token store {scheme}://{hosts}"
        return f"token store {scheme}://{hosts}/{self.db}"


def redis_target(url: str) -> RedisTarget:
    """oauth2_store's URL, checked; ConfigError naming what is wrong."""
    scheme, sep, rest = url.partition("://")
    topology = SCHEMES.get(scheme.lower()) if sep else None
    if topology is None:
        raise ConfigError(f"oauth2_store: must be empty (the disk cache) or {_EXAMPLES}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    user, _, netloc = netloc.rpartition("@")
    if ":" in user:
        # Option values show in mitmweb and in logs; the password must not.
        raise ConfigError(
            "oauth2_store: no password in the URL; name an environment variable holding it "
            "with oauth2_store_password_env"
        )
    if query and topology is not Topology.SERVER:
        raise ConfigError(f"oauth2_store: {scheme}:// takes no query ({query!r})")
    nodes = tuple(_node(part, _DEFAULT_PORT[topology]) for part in netloc.split(","))
    if topology is Topology.SERVER and len(nodes) > 1:
        raise ConfigError(
            "oauth2_store: redis:// names one server; for several, use redis+sentinel:// or "
            "redis+cluster://"
        )
    segments = [s for s in path.split("/") if s] if path else []
    service = None
    if topology is Topology.SENTINEL:
        if not segments:
            raise ConfigError(
                "oauth2_store: name the service the Sentinels monitor: "
                f"{scheme}://{netloc}/SERVICE/DB"
            )
        service, segments = segments[0], segments[1:]
    if len(segments) > 1:
        raise ConfigError(f"oauth2_store: unexpected path /{path} (only a database number)")
    db = _db(segments[0]) if segments else 0
    if topology is Topology.CLUSTER and db != 0:
        raise ConfigError("oauth2_store: a Redis Cluster has only database 0")
    tls = scheme.lower().startswith("rediss")
    return RedisTarget(url, topology, tls, nodes, service, db, unquote(user) or None)


def _node(text: str, default_port: int) -> tuple[str, int]:
    try:
        parts = urlsplit("//" + text.strip())
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"oauth2_store: not a valid URL ({text!r}: {e})") from None
    if not parts.hostname:
        raise ConfigError(
            "oauth2_store: the URL names no host"
            if not text
            else f"oauth2_store: {text!r} names no host"
        )
    return parts.hostname, port or default_port


def _db(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"oauth2_store: database must be a number, not {text!r}")
    return int(text)
