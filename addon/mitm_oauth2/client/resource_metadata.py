"""Learning an unconfigured backend from what it says of itself: its protected resource metadata
(RFC 9728), then its authorization server's metadata (RFC 8414, OpenID Connect Discovery).

Only GETs, over HTTPS, without credentials or cookies, each bounded in time and size, and
redirects followed only within the server asked. Nothing else is ever sent to a server learned
this way: a person decides whether to add the `[[backend]]` it suggests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import ssl
from urllib.parse import urljoin
from urllib.parse import urlsplit

import httpx

from ..model.errors import LearningError
from ..model.learned import LearnedBackend
from ..model.net import printable
from .discovery import metadata_urls
from .http import ACCEPT_ENCODING
from .http import read_at_most

TIMEOUT = 5.0  # seconds per document
TOTAL_TIMEOUT = 15.0  # seconds for both documents and their redirects
MAX_BYTES = 64 * 1024  # a metadata document is a few KiB
MAX_REDIRECTS = 3
MAX_SCOPES = 50
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 §3.3


class ResourceLearner:
    """Fetches and checks the two documents; raises LearningError saying what is wrong."""

    def __init__(
        self, ca_file: str | None = None, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        # The trust mitmproxy gives the backend's own connections (ssl_verify_upstream_trusted_ca).
        self.ca_file = ca_file
        context = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._http = httpx.AsyncClient(
            timeout=TIMEOUT,
            verify=context,
            transport=transport,
            trust_env=False,  # never through this proxy itself, whatever HTTPS_PROXY says
            follow_redirects=False,  # followed here, within the same server only
            headers={**ACCEPT_ENCODING, "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def learn(self, request_url: str, metadata_url: str) -> LearnedBackend:
        """`metadata_url`: what the backend's 401 named (`resource_metadata`) for a request to
        `request_url`; all of it within TOTAL_TIMEOUT."""
        try:
            async with asyncio.timeout(TOTAL_TIMEOUT):
                return await self._learn(request_url, metadata_url)
        except TimeoutError as e:
            raise LearningError(f"not learned within {TOTAL_TIMEOUT:g} s") from e
        except ValueError as e:  # a URL urllib cannot parse
            raise LearningError(f"a URL that cannot be parsed ({printable(str(e), 100)})") from e

    async def _learn(self, request_url: str, metadata_url: str) -> LearnedBackend:
        request = urlsplit(request_url)
        named = urlsplit(metadata_url)
        if named.scheme != "https" or named.netloc != request.netloc:
            raise LearningError(
                f"resource_metadata {printable(metadata_url, 200)} is not an https URL on "
                f"{request.netloc}"
            )
        document = await self._get(metadata_url)
        resource = document.get("resource")
        # RFC 9728 §3.3: metadata for another resource than the one asked must not be used.
        if not isinstance(resource, str) or not _covers(resource, request_url):
            found = printable(str(resource), 200)
            raise LearningError(
                f"{printable(metadata_url, 200)} is for resource {found!r}, not for "
                f"{request.scheme}://{request.netloc}{request.path}"
            )
        servers = document.get("authorization_servers")
        if not isinstance(servers, list) or not servers or not isinstance(servers[0], str):
            raise LearningError(f"{printable(metadata_url, 200)} names no authorization_servers")
        issuer = servers[0]
        issuer_host = urlsplit(issuer).hostname
        if urlsplit(issuer).scheme != "https" or not issuer_host:
            raise LearningError(f"authorization server {printable(issuer, 200)} is not https")
        # A backend on the internet must not make the proxy ask its own network (SSRF): an
        # authorization server on a loopback, private or link-local address is only learned
        # from a backend on such an address too.
        if await _internal(issuer_host) and not await _internal(request.hostname or ""):
            raise LearningError(
                f"authorization server {printable(issuer, 200)} is on a private address, and "
                f"the backend {request.netloc} is not"
            )
        await self._issuer_metadata(issuer)
        scopes = document.get("scopes_supported")
        listed = scopes if isinstance(scopes, list) else []
        named_scopes = [s for s in listed if isinstance(s, str) and _SCOPE_TOKEN.match(s)]
        # Shown on flows and written into TOML: ASCII only, as these URLs are.
        return LearnedBackend(
            printable(resource, 2000),
            printable(issuer, 2000),
            tuple(named_scopes[:MAX_SCOPES]),
            printable(metadata_url, 2000),
        )

    async def _issuer_metadata(self, issuer: str) -> dict[str, object]:
        """RFC 8414 §3.3: the metadata must name this issuer, and a token endpoint."""
        failures = []
        for url in metadata_urls(issuer):
            try:
                metadata = await self._get(url)
            except LearningError as e:
                failures.append(str(e))
                continue
            if metadata.get("issuer") == issuer and isinstance(metadata.get("token_endpoint"), str):
                return metadata
            failures.append(f"{url} is not the metadata of issuer {issuer} with a token_endpoint")
        raise LearningError("; ".join(failures))

    async def _get(self, url: str) -> dict[str, object]:
        origin = urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            try:
                # The whole document within TIMEOUT: httpx's timeout is per read, and a server
                # that sends a byte a second would never reach it.
                async with asyncio.timeout(TIMEOUT), self._http.stream("GET", url) as response:
                    body = await _read(response, url)
            except TimeoutError as e:
                raise LearningError(f"{printable(url, 200)}: no answer within {TIMEOUT:g} s") from e
            except (httpx.HTTPError, httpx.InvalidURL) as e:
                raise LearningError(f"{printable(url, 200)}: {type(e).__name__}") from e
            if not response.is_redirect:
                break
            target = urljoin(url, response.headers.get("Location", ""))
            parts = urlsplit(target)
            if parts.scheme != "https" or parts.netloc != origin:
                raise LearningError(
                    f"{printable(url, 200)} redirects to another server "
                    f"({printable(parts.netloc or target, 100)})"
                )
            url = target
        else:
            raise LearningError(f"{printable(url, 200)}: more than {MAX_REDIRECTS} redirects")
        if response.status_code != 200:
            raise LearningError(f"{printable(url, 200)}: HTTP {response.status_code}")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise LearningError(f"{printable(url, 200)}: not JSON") from e
        if not isinstance(document, dict):
            raise LearningError(f"{printable(url, 200)}: not a JSON object")
        return document


async def _read(response: httpx.Response, url: str) -> bytes:
    """The body, refused (unread past the limit) when it is larger than MAX_BYTES."""
    if response.is_redirect:
        return b""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):  # asked for none: refused unread
        raise LearningError(f"{printable(url, 200)}: a body in {printable(encoding, 40)!r}")
    body = await read_at_most(response, MAX_BYTES)
    if body is None:
        raise LearningError(f"{printable(url, 200)}: more than {MAX_BYTES} bytes")
    return body


async def _internal(host: str) -> bool:
    """Whether `host` is, or resolves to, a loopback, private, link-local or reserved address
    (a name that does not resolve counts as internal: it is not learned from a public one)."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, 443)
        except OSError:
            return True
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    return any(
        a.is_loopback or a.is_private or a.is_link_local or a.is_reserved or a.is_unspecified
        for a in addresses
    )


def _covers(resource: str, request_url: str) -> bool:
    """Whether `request_url` is at or below the resource identifier (same scheme, host and
    port; its path a prefix at a segment boundary)."""
    ours, theirs = urlsplit(resource), urlsplit(request_url)
    if (ours.scheme, ours.netloc.lower()) != (theirs.scheme, theirs.netloc.lower()):
        return False
    base = ours.path.rstrip("/")
    return not base or theirs.path == base or theirs.path.startswith(base + "/")
