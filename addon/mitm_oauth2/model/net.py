"""What comes off the network, made safe to act on: text for one log line, loopback hosts, the
values of one header."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable


def printable(text: str, limit: int) -> str:
    """Server-supplied text made safe for one log line or problem field."""
    cleaned = "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text)
    return cleaned[:limit]


@functools.lru_cache(maxsize=1024)  # asked for every plain-HTTP request to a backend
def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def header_values(fields: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The raw values of header `name` (lower case) among a request's header fields: what
    `Headers.get_all` finds, at a third of its cost (asked for every request to a backend)."""
    return [value for key, value in fields if key.lower() == name]
