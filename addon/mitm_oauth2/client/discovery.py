"""Finding the token endpoint from an issuer: RFC 8414 metadata, then OpenID discovery."""

from __future__ import annotations

import json
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import httpx

from ..model.clock import Clock
from ..model.clock import SystemClock
from ..model.errors import TokenError
from ..model.net import is_loopback
from ..model.net import printable
from .http import read_limited

METADATA_TTL = 3600.0


def metadata_urls(issuer: str) -> list[str]:
    """Where the metadata may be: RFC 8414 §3 inserts the well-known part between host and
    path; OpenID Connect Discovery appends it to the issuer."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", "")
    )
    openid = urlunsplit(
        (parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", "")
    )
    return [rfc8414, openid]


class Discovery:
    """Token endpoints by issuer, from metadata kept for METADATA_TTL seconds."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._known: dict[str, tuple[dict[str, object], float]] = {}

    async def token_endpoint(self, http: httpx.AsyncClient, issuer: str, *, mtls: bool) -> str:
        metadata = await self._metadata(http, issuer)
        endpoint = metadata.get("token_endpoint")
        aliases = metadata.get("mtls_endpoint_aliases")
        # RFC 8705 §5: a server may serve mutual-TLS clients at another token endpoint.
        if mtls and isinstance(aliases, dict) and isinstance(aliases.get("token_endpoint"), str):
            endpoint = aliases["token_endpoint"]
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or not parts.hostname or parts.scheme not in ("https", "http"):
            raise TokenError(f"metadata of issuer {issuer} has no usable token_endpoint")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            # RFC 6749 §3.2: credentials travel to the token endpoint over TLS only.
            raise TokenError(f"metadata of issuer {issuer} names a token_endpoint without https")
        return str(endpoint)

    async def _metadata(self, http: httpx.AsyncClient, issuer: str) -> dict[str, object]:
        known = self._known.get(issuer)
        if known is not None and self._clock.monotonic() - known[1] < METADATA_TTL:
            return known[0]
        failures = []
        for url in metadata_urls(issuer):
            try:
                metadata = await self._fetch(http, url)
            except TokenError as e:
                failures.append(f"{url}: {e.cause}")
                continue
            # RFC 8414 §3.3: metadata for another issuer must not be used.
            if metadata.get("issuer") != issuer:
                found = printable(str(metadata.get("issuer")), 100)
                failures.append(f"{url}: names issuer {found!r}, not {issuer!r}")
                continue
            self._known[issuer] = (metadata, self._clock.monotonic())
            return metadata
        raise TokenError("discovery failed: " + "; ".join(failures))

    @staticmethod
    async def _fetch(http: httpx.AsyncClient, url: str) -> dict[str, object]:
        try:
            async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
                body = await read_limited(response, "metadata endpoint")
                status = response.status_code
        except httpx.HTTPError as e:
            raise TokenError(f"request failed ({type(e).__name__})") from e
        if status != 200:
            raise TokenError(f"HTTP {status}", status=status)
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise TokenError("not JSON") from e
        if not isinstance(document, dict):
            raise TokenError("not a JSON object")
        return document
