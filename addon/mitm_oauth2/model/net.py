"""What comes off the network, made safe to act on: text for one log line, loopback hosts."""

from __future__ import annotations

import functools
import ipaddress


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
