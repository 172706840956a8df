"""Reading what authorization servers send: bounded bodies, no content coding."""

from __future__ import annotations

import httpx

from ..model.errors import TokenError
from ..model.net import printable

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
    body = await read_at_most(response, MAX_RESPONSE_BYTES)
    if body is None:
        raise TokenError(
            f"{what} sent more than {MAX_RESPONSE_BYTES} bytes", status=response.status_code
        )
    return body


async def read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body as sent, or None when it is longer than `limit` (not read further)."""
    body = bytearray()
    if response.is_stream_consumed:  # built from bytes already in memory (mock transports)
        body += response.content
    else:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > limit:
                break
    return None if len(body) > limit else bytes(body)
