"""RFC 9457 problem documents: how the proxy tells a caller why it did not forward a request."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .model.errors import TokenError
from .model.net import printable

CONTENT_TYPE = "application/problem+json"
TOKEN_UNAVAILABLE = "urn:mitm-oauth2:problem:token-unavailable"
MISDIRECTED = "urn:mitm-oauth2:problem:misdirected-request"
PLAIN_HTTP = "urn:mitm-oauth2:problem:plain-http"
CALLER_TOKEN = "urn:mitm-oauth2:problem:caller-token"
PHANTOM_TOKEN = "urn:mitm-oauth2:problem:phantom-token"


@dataclass(frozen=True)
class Problem:
    type: str
    title: str
    status: int
    detail: str
    backend: str
    oauth_error: str | None = None
    retry_after: int | None = None
    www_authenticate: str | None = None  # a 401's challenge (RFC 9110 §11.6.1)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": CONTENT_TYPE}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.www_authenticate is not None:
            headers["WWW-Authenticate"] = self.www_authenticate
        return headers

    def to_json(self) -> bytes:
        document: dict[str, object] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "backend": self.backend,
        }
        if self.oauth_error is not None:
            document["oauth_error"] = self.oauth_error
        return json.dumps(document).encode()


def token_unavailable(backend: str, error: TokenError) -> Problem:
    """502, or 503 with Retry-After when the authorization server said when to come back:
    the request was not forwarded because no access token could be obtained.

    The detail carries only the failure's cause (status, OAuth error code), never the
    token endpoint's raw body, the secret or any token.
    """
    retry_after = None if error.retry_after is None else max(1, math.ceil(error.retry_after))
    return Problem(
        type=TOKEN_UNAVAILABLE,
        title="No access token for the backend",
        status=502 if retry_after is None else 503,
        detail=f"No access token could be obtained for backend '{backend}': {error.cause}.",
        backend=backend,
        oauth_error=error.oauth_error,
        retry_after=retry_after,
    )


def misdirected(backend: str, named: str, target: str) -> Problem:
    """421 (RFC 9110 §15.5.20): the Host header or `:authority` names another server than the one
    the proxy connects to. A front end shared by several sites routes on that name, so the token
    would reach whichever site the caller names: the request is not forwarded."""
    return Problem(
        type=MISDIRECTED,
        title="The request names another server than the one it goes to",
        status=421,
        detail=(
            f"Not forwarded with the token of backend '{backend}': the request names "
            f"{printable(named, 100)!r}, but goes to {target}."
        ),
        backend=backend,
    )


def plain_http(backend: str, target: str) -> Problem:
    """403: the request would carry the token in clear over the network (http:// to a host
    beyond loopback) and the backend does not say `allow_plain_http`: not forwarded."""
    return Problem(
        type=PLAIN_HTTP,
        title="The token is not sent over plain HTTP",
        status=403,
        detail=(
            f"Not forwarded with the token of backend '{backend}': http://{target} would carry "
            "it unencrypted; use https, or set allow_plain_http for this backend."
        ),
        backend=backend,
    )


def caller_token_missing(backend: str, header: str) -> Problem:
    """401: a token_exchange backend acts for the caller, and the caller sent no token (RFC 6750
    §3.1: a challenge without an error code)."""
    where = "Authorization: Bearer <token>" if header.lower() == "authorization" else header
    return Problem(
        type=CALLER_TOKEN,
        title="The request carries no token of the caller's",
        status=401,
        detail=(
            f"Not forwarded: backend '{backend}' exchanges the caller's own token for one of "
            f"its own; send it in {where}."
        ),
        backend=backend,
        www_authenticate="Bearer",
    )


def caller_token_refused(backend: str, error: TokenError) -> Problem:
    """401 invalid_token, or 403 for invalid_target: the caller's token cannot be exchanged
    (expired, unfit to send) or the authorization server will not exchange it (for this
    backend); the caller must act."""
    forbidden = error.oauth_error == "invalid_target"
    return Problem(
        type=CALLER_TOKEN,
        title="The caller's token was refused",
        status=403 if forbidden else 401,
        detail=f"Not forwarded: backend '{backend}': {error.cause}.",
        backend=backend,
        oauth_error=error.oauth_error or "invalid_token",
        www_authenticate=None if forbidden else 'Bearer error="invalid_token"',
    )


def phantom_refused(backend: str, why: str, *, challenge: str | None = None) -> Problem:
    """401: a request to a phantom backend without a phantom token this proxy issued for it
    (or with one that has expired); the real token is not put on it, nothing is forwarded."""
    return Problem(
        type=PHANTOM_TOKEN,
        title="No phantom token for this backend",
        status=401,
        detail=f"Not forwarded to backend '{backend}': {why}.",
        backend=backend,
        oauth_error=None if challenge else "invalid_token",
        www_authenticate=challenge or 'Bearer error="invalid_token"',
    )
