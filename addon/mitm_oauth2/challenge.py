"""What a backend's `WWW-Authenticate` challenges say of our token (RFC 9110 §11.6.1, RFC 6750
§3.1, RFC 9449 §7.1 and §9): rejected (renew and replay), lacking a scope (neither), or wanting
a DPoP nonce (the same token again with it)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mitmproxy import http

from .config.backend import BackendConfig
from .model.net import printable
from .model.token import Token

Scopes = tuple[str, ...]

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# One element of a WWW-Authenticate value (RFC 9110 §11.6.1): an auth-param `name=value`, or a
# bare token, which starts a new challenge (a token68 credential parses as a harmless param).
_ELEMENT = re.compile(rf'[\s,]*(?:({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)|({_TOKEN}))')
_QUOTED_PAIR = re.compile(r"\\(.)")


def parse_challenges(values: Iterable[str]) -> list[tuple[str, dict[str, str]]]:
    """(scheme, params) per challenge, names in lower case; stops at what it cannot parse."""
    challenges: list[tuple[str, dict[str, str]]] = []
    for value in values:
        pos = 0
        while (match := _ELEMENT.match(value, pos)) is not None:
            pos = match.end()
            name, raw, scheme = match.groups()
            if scheme is not None:
                challenges.append((scheme.lower(), {}))
            elif challenges:
                if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                    raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
                challenges[-1][1][name.lower()] = raw
    return challenges


def token_rejected(response: http.Response) -> bool:
    """Whether the backend says the token itself is bad, so that a fresh one may succeed.

    A 401 without a challenge, or with a Bearer (or DPoP, RFC 9449 §7.1) challenge whose error
    is `invalid_token` or absent (RFC 6750 §3.1 makes the error optional). Not a 403
    (`insufficient_scope`: a fresh token has the same scope), not another error such as
    `invalid_request` (the request is at fault) or `use_dpop_nonce` (see `dpop_nonce_asked`),
    not a challenge for other schemes only (the backend wants other credentials).
    """
    if response.status_code != 401:
        return False
    values = [value for value in response.headers.get_all("WWW-Authenticate") if value.strip()]
    if not values:
        return True
    ours = [p for scheme, p in parse_challenges(values) if scheme in ("bearer", "dpop")]
    return any(params.get("error", "invalid_token") == "invalid_token" for params in ours)


def dpop_nonce_asked(response: http.Response) -> str | None:
    """RFC 9449 §9: the nonce a resource server wants in DPoP proofs, when its 401 says so."""
    if response.status_code != 401:
        return None
    values = [value for value in response.headers.get_all("WWW-Authenticate") if value.strip()]
    asked = any(
        scheme == "dpop" and params.get("error") == "use_dpop_nonce"
        for scheme, params in parse_challenges(values)
    )
    nonce = response.headers.get("DPoP-Nonce")
    return nonce if asked and nonce else None


def scope_wanted(response: http.Response) -> Scopes | None:
    """RFC 6750 §3.1: the scopes a backend wants when its 401 or 403 says the token lacks some
    (`insufficient_scope`, its `scope` parameter; empty when it names none); None otherwise.
    Such a token is not rejected: a fresh one would have the same scopes."""
    if response.status_code not in (401, 403):
        return None
    values = [value for value in response.headers.get_all("WWW-Authenticate") if value.strip()]
    for scheme, params in parse_challenges(values):
        if scheme in ("bearer", "dpop") and params.get("error") == "insufficient_scope":
            # Scope tokens are ASCII (RFC 6749 §3.3); anything else is shown as "?", so that
            # the flow carrying them can still be saved.
            return tuple(printable(scope, 200) for scope in params.get("scope", "").split()[:50])
    return None


@dataclass(frozen=True)
class ScopeRefusal:
    """A backend's `insufficient_scope`: the scopes it wants, and those the token has."""

    wanted: Scopes  # empty when the backend named none
    has: Scopes

    def describe(self) -> str:
        wanted = " ".join(self.wanted) if self.wanted else "a scope it does not name"
        has = " ".join(self.has) if self.has else "no scope"
        return f"wants {wanted}; the token has {has}"


def token_scopes(token: Token | None, backend: BackendConfig) -> Scopes:
    """The scopes a token was granted: the token response's `scope`, else the token's own
    claims (a JWT), else those asked for (RFC 6749 §5.1: an omitted scope is the one asked)."""
    if token is not None and token.scope:
        return tuple(token.scope.split())
    if token is not None and token.claims is not None and token.claims.scopes:
        return token.claims.scopes
    return backend.grant.credentials.scopes


def resource_metadata_named(response: http.Response) -> str | None:
    """RFC 9728 §5.1: the URL of the protected resource metadata a 401's Bearer (or DPoP)
    challenge names, as MCP servers and other OAuth-protected APIs send it."""
    if response.status_code != 401:
        return None
    values = [value for value in response.headers.get_all("WWW-Authenticate") if value.strip()]
    for scheme, params in parse_challenges(values):
        if scheme in ("bearer", "dpop") and params.get("resource_metadata"):
            return params["resource_metadata"]
    return None
