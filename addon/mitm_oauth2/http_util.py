"""Small helpers for reading what authorization servers send: bounded bodies, printable text."""

from __future__ import annotations

import ipaddress

import httpx

from .tokens import TokenError

# A token response or metadata document is a few KiB at most; more is a misbehaving server.
MAX_RESPONSE_BYTES = 1 << 20
# Sent on every token and metadata request: a compressed body would be inflated whole, chunk by
# chunk, before any limit applies (a 2 KiB brotli body becomes gigabytes).
ACCEPT_ENCODING = {"Accept-Encoding": "identity"}


async def read_limited(response: httpx.Response, what: str) -> bytes:
    """The body as sent, refusing (not reading further) past MAX_RESPONSE_BYTES; a body in a
    content coding (we ask for none) is refused unread."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise TokenError(
            f"{what} sent a body with Content-Encoding {printable(encoding, 40)!r},"
            " though asked for identity",
            status=response.status_code,
        )
    body = bytearray()
    if response.is_stream_consumed:  # built from bytes already in memory (mock transports)
        body += response.content
    else:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                break
    if len(body) > MAX_RESPONSE_BYTES:
        raise TokenError(
            f"{what} sent more than {MAX_RESPONSE_BYTES} bytes", status=response.status_code
        )
    return bytes(body)


def printable(text: str, limit: int) -> str:
    """Server-supplied text made safe for one log line or problem field."""
    cleaned = "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text)
    return cleaned[:limit]


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
