"""Whether a request may carry its backend's token to where it goes (checked before any token
is asked for): not when its Host header or `:authority` names another server, and not over
plain HTTP beyond loopback unless the backend allows it.

`Destinations` asks that for every request to a backend and remembers the answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config.backend import BackendConfig
from .config.hosts import HostPattern
from .config.hosts import misnamed
from .model.net import header_values
from .model.net import is_loopback
from .problem import Problem
from .problem import misdirected
from .problem import plain_http

MAX_REMEMBERED = 4096  # answers kept per configuration, whatever names clients send
_UNSEEN = object()


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
    decodes them."""
    return [value.decode("utf-8", "surrogateescape") for value in header_values(fields, b"host")]


class Destinations:
    """`refusal`, remembered by backend, names and target. Clients send the same few names
    again and again, and parsing them (IP literals, IDNA) for each request would cost more
    than all the rest a cache hit does. One per configuration: a backend's settings are part
    of the answer."""

    def __init__(self) -> None:
        self._seen: dict[tuple[object, ...], Refusal | None] = {}

    def refusal(
        self,
        backend: BackendConfig,
        host: str,
        port: int,
        scheme: str,
        fields: tuple[tuple[bytes, bytes], ...],
        authority: str,
    ) -> Refusal | None:
        """`refusal` for a request with these header fields."""
        named = host_headers(fields)
        key = (backend.name, authority, host, port, scheme, *named)  # the names last: unambiguous
        found = self._seen.get(key, _UNSEEN)
        if found is _UNSEEN:
            found = refusal(backend, host, port, scheme, named, authority)
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen.clear()
            self._seen[key] = found
        return found  # type: ignore[return-value]
