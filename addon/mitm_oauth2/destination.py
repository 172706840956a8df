"""Whether a request may carry its backend's token to where it goes (checked before any token
is asked for): not when its Host header or `:authority` names another server, and not over
plain HTTP beyond loopback unless the backend allows it."""

from __future__ import annotations

from dataclasses import dataclass

from .config.backend import BackendConfig
from .config.hosts import HostPattern
from .config.hosts import misnamed
from .model.net import is_loopback
from .problem import Problem
from .problem import misdirected
from .problem import plain_http


@dataclass(frozen=True)
class Refusal:
    problem: Problem
    cause: str  # for the flow's comment and metadata


def refusal(
    backend: BackendConfig,
    host: str,
    port: int,
    scheme: str,
    host_headers: list[str],
    authority: str,
) -> Refusal | None:
    """Why the request may not carry `backend`'s token to where mitmproxy sends it (host, port,
    scheme), given what it names itself (its Host headers, `:authority`); None when it may."""
    named = misnamed(host_headers, authority, host, port, scheme)
    if named is not None:
        target = _target(host, port)
        return Refusal(
            misdirected(backend.name, named, target), f"names {named!r}, goes to {target}"
        )
    if scheme != "https" and not backend.allow_plain_http and not is_loopback(host):
        return Refusal(plain_http(backend.name, _target(host, port)), "plain http")
    return None


def _target(host: str, port: int) -> str:
    """`host:port` for a refusal's message; not built for the requests that pass."""
    return str(HostPattern(host, port))


def host_headers(fields: tuple[tuple[bytes, bytes], ...]) -> list[str]:
    """Every Host header of a request's header fields, decoded as `Headers.get_all("Host")`
    decodes them, at a third of its cost (asked for every request to a backend)."""
    return [
        value.decode("utf-8", "surrogateescape")
        for name, value in fields
        if name.lower() == b"host"
    ]
