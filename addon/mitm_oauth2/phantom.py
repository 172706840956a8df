"""Phantom tokens, for clients that insist on doing OAuth themselves (an SDK given a client id
and secret, a Google library given a service-account key file): run them with dummy credentials
behind the proxy. Their token requests to a `phantom` backend's token endpoint are answered
here and never forwarded, with a phantom token (tokens.phantoms); their requests to the backend
carry it, and it is swapped for the real token. So no credential of the client leaves, and the
real token never reaches it. The client's other requests to the authorization server (its
metadata, say) pass untouched.

A backend configured with `issuer` has its token endpoint found by discovery: the first request
to the issuer's host waits for the proxy's own (the client's metadata request, typically), so
that no token request can pass before the endpoint is known.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from mitmproxy import http

from .client.token_client import TokenClient
from .config.backend import BackendConfig
from .config.hosts import DEFAULT_PORTS
from .config.hosts import normalize_host
from .exchange import caller_token
from .model.background import in_background
from .model.credentials import ClientCredentials
from .model.errors import CallerTokenRefused
from .problem import Problem
from .problem import phantom_refused
from .tokens.broker import Issued
from .tokens.phantoms import Phantoms

logger = logging.getLogger(__name__)

# What SDKs ask with (RFC 6749 §4.4, RFC 7523 §2.1); their client authentication is not looked
# at: its credentials are dummies, and the proxy holds the real ones.
GRANTS = frozenset({"client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"})
MAX_FORM_BYTES = 64 * 1024

Place = tuple[str, int, str, str]  # host, port, scheme, path
Origin = tuple[str, int, str]  # host, port, scheme
Discover = Callable[[ClientCredentials], Awaitable[str]]  # the token endpoint of a grant


def place(url: str) -> Place:
    """Where a configured URL is, its host compared as the router compares hosts."""
    parts = urlsplit(url)
    scheme = parts.scheme
    port = parts.port or DEFAULT_PORTS[scheme]
    return normalize_host(parts.hostname or ""), port, scheme, parts.path or "/"


def origin_of(request: http.Request) -> Origin | None:
    """Where `request` goes, in the same terms (None: no host a URL could name)."""
    try:
        return normalize_host(request.host), request.port, request.scheme
    except ValueError:
        return None


class PhantomGrant:
    """The phantom backends' token endpoints, and the phantom tokens issued for them."""

    def __init__(self, tokens: Phantoms | None = None, discover: Discover | None = None) -> None:
        self.tokens = tokens if tokens is not None else Phantoms()  # an empty one is falsy
        self._discover = discover
        self._client: TokenClient | None = None  # discovery's, made when first needed
        self._endpoints: dict[Place, BackendConfig] = {}
        # issuer's host -> the phantom backends whose token endpoint is not known yet there
        self._issuers: dict[Origin, list[BackendConfig]] = {}
        self._finding: dict[str, asyncio.Task[str]] = {}  # backend -> its discovery, running
        self.active = False  # any phantom backend: read for every request, so a plain attribute

    def configure(self, backends: Iterable[BackendConfig]) -> None:
        self._endpoints, self._issuers = {}, {}
        for backend in backends:
            credentials = backend.grant.credentials
            if not backend.phantom:
                continue
            if credentials.token_url is not None:
                self._endpoints[place(credentials.token_url)] = backend
            elif credentials.issuer is not None:
                origin = place(credentials.issuer)[:3]
                self._issuers.setdefault(origin, []).append(backend)
        self.active = bool(self._endpoints or self._issuers)

    def awaiting_discovery(self, request: http.Request) -> list[BackendConfig] | None:
        """The phantom backends whose token endpoint, not known yet, may be at `request`'s
        host (their issuer's)."""
        if not self._issuers:
            return None
        origin = origin_of(request)
        return None if origin is None else self._issuers.get(origin)

    async def discover(self, backends: list[BackendConfig]) -> None:
        """Finds their token endpoints (TokenError when the issuer's metadata will not say)."""
        for backend in backends:
            finding = self._finding.get(backend.name)
            if finding is None:  # one discovery at a time per backend, whoever waits for it
                finding = asyncio.ensure_future(self._token_endpoint(backend.grant.credentials))
                self._finding[backend.name] = finding
                finding.add_done_callback(functools.partial(self._found, backend.name))
            endpoint = await asyncio.shield(finding)
            self._endpoints[place(endpoint)] = backend
            origin = place(backend.grant.credentials.issuer or endpoint)[:3]
            waiting = self._issuers.get(origin, [])
            if backend in waiting:
                waiting.remove(backend)
            if not waiting:
                self._issuers.pop(origin, None)

    def _found(self, backend: str, finding: asyncio.Task[str]) -> None:
        if self._finding.get(backend) is finding:
            del self._finding[backend]
        if not finding.cancelled():
            finding.exception()  # retrieved: whoever waited was told

    def discover_soon(self) -> None:
        """Starts finding every token endpoint not known yet (a client may know the endpoint
        and never ask the issuer's host first); needs the running loop, does nothing without."""
        if not self._issuers:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        for backends in list(self._issuers.values()):
            in_background(self._discover_now(list(backends)))

    async def _discover_now(self, backends: list[BackendConfig]) -> None:
        try:
            await self.discover(backends)
        except Exception as e:  # told; the next request to the issuer's host tries again
            logger.warning(
                "backend %s: the token endpoint to answer with phantom tokens is not known yet "
                "(%s); requests to the issuer wait for it",
                backends[0].name,
                e,
            )

    async def _token_endpoint(self, credentials: ClientCredentials) -> str:
        if self._discover is not None:
            return await self._discover(credentials)
        if self._client is None:
            self._client = TokenClient()
        return await self._client.token_endpoint(credentials)

    def close(self) -> None:
        """Releases discovery's connections (made, like them, on the running loop)."""
        if self._client is not None:
            in_background(self._client.aclose())
            self._client = None

    def endpoint_of(self, request: http.Request) -> BackendConfig | None:
        """The phantom backend whose token endpoint `request` is for, if any."""
        origin = origin_of(request)
        if origin is None:
            return None
        return self._endpoints.get((*origin, request.path.split("?")[0]))

    @staticmethod
    def grant_refusal(request: http.Request) -> tuple[str, str] | None:
        """(OAuth error, description) when the token request is not one the phantom grant
        answers; None when it is."""
        if request.method != "POST":
            return "invalid_request", "a token request is a POST"
        body = request.raw_content or b""
        if len(body) > MAX_FORM_BYTES:
            return "invalid_request", "the form is too long"
        try:
            form = parse_qs(body.decode("ascii"), strict_parsing=False)
        except UnicodeDecodeError:
            return "invalid_request", "the form is not ASCII"
        grant = form.get("grant_type", [""])[0]
        if grant not in GRANTS:
            shown = grant[:60] or "none"
            return "unsupported_grant_type", f"grant_type {shown!r}: the proxy answers only " + (
                "client_credentials and jwt-bearer requests"
            )
        return None

    def answer(self, backend: BackendConfig, issue: Issued) -> http.Response:
        """The token response (RFC 6749 §5.1) with a phantom token that lives as long as the
        real one has left."""
        left = max(1, math.floor(issue.left))
        phantom = self.tokens.issue(backend.name, left)
        document: dict[str, object] = {
            "access_token": phantom,
            "token_type": "Bearer",
            "expires_in": left,
        }
        if issue.token.scope:
            document["scope"] = issue.token.scope
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        return http.Response.make(200, json.dumps(document).encode(), headers)

    @staticmethod
    def oauth_error(code: str, description: str) -> http.Response:
        """A token endpoint's error answer (RFC 6749 §5.2), as the client's SDK expects one."""
        document = {"error": code, "error_description": description}
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        return http.Response.make(400, json.dumps(document).encode(), headers)

    def swap_refusal(self, request: http.Request, backend: BackendConfig) -> Problem | None:
        """Why a request to a phantom backend may not have the real token (None: it may)."""
        try:
            token = caller_token(request, "Authorization")
        except CallerTokenRefused as e:
            return phantom_refused(backend.name, e.cause)
        if token is None:
            why = "it carries no phantom token (Authorization: Bearer <the token it was given>)"
            return phantom_refused(backend.name, why, challenge="Bearer")
        refused = self.tokens.refusal(token, backend.name)
        return None if refused is None else phantom_refused(backend.name, refused)
