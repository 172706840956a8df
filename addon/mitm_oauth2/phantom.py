"""Phantom tokens, for clients that insist on doing OAuth themselves (an SDK given a client id
and secret, a Google library given a service-account key file): run them with dummy credentials
behind the proxy. Their token requests to a `phantom` backend's token endpoint are answered
here and never forwarded, with a phantom token (tokens.phantoms); their requests to the backend
carry it, and it is swapped for the real token. So no credential of the client leaves, and the
real token never reaches it. The client's other requests to the authorization server (its
metadata, say) pass untouched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from mitmproxy import http

from .config.backend import BackendConfig
from .config.hosts import DEFAULT_PORTS
from .problem import Problem
from .problem import phantom_refused
from .tokens.broker import Issued
from .tokens.phantoms import Phantoms

# What SDKs ask with (RFC 6749 §4.4, RFC 7523 §2.1); their client authentication is not looked
# at: its credentials are dummies, and the proxy holds the real ones.
GRANTS = frozenset({"client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"})
MAX_FORM_BYTES = 64 * 1024

Place = tuple[str, int, str, str]  # host, port, scheme, path


def place(url: str) -> Place:
    parts = urlsplit(url)
    scheme = parts.scheme
    port = parts.port or DEFAULT_PORTS[scheme]
    return (parts.hostname or "").lower(), port, scheme, parts.path or "/"


class PhantomGrant:
    """The phantom backends' token endpoints, and the phantom tokens issued for them."""

    def __init__(self, tokens: Phantoms | None = None) -> None:
        self.tokens = tokens if tokens is not None else Phantoms()  # an empty one is falsy
        self._endpoints: dict[Place, BackendConfig] = {}
        self.active = False  # any phantom backend: read for every request, so a plain attribute

    def configure(self, backends: Iterable[BackendConfig]) -> None:
        self._endpoints = {
            place(backend.grant.credentials.token_url): backend
            for backend in backends
            if backend.phantom and backend.grant.credentials.token_url
        }
        self.active = bool(self._endpoints)

    def endpoint_of(self, request: http.Request) -> BackendConfig | None:
        """The phantom backend whose token endpoint `request` is for, if any."""
        key = (request.host.lower(), request.port, request.scheme, request.path.split("?")[0])
        return self._endpoints.get(key)

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
        values = request.headers.get_all("Authorization")
        scheme, _, token = values[0].strip().partition(" ") if len(values) == 1 else ("", "", "")
        if scheme.lower() != "bearer" or not token.strip():
            why = "it carries no phantom token (Authorization: Bearer <the token it was given>)"
            return phantom_refused(backend.name, why, challenge="Bearer")
        refused = self.tokens.refusal(token.strip(), backend.name)
        return None if refused is None else phantom_refused(backend.name, refused)
