"""Client assertions the platform issues and rotates (workload identity): a Kubernetes
projected service-account token, Azure's `AZURE_FEDERATED_TOKEN_FILE`, a GCP or AWS
web-identity token file. Read again for every token request, since the platform replaces the
file before the assertion in it expires; checked enough that a file that cannot serve gets a
reason here, not an `invalid_client` from the server."""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from ..model.errors import TokenError


class AssertionProblem(ValueError):
    """Why a file holds no usable assertion; never quotes the assertion itself."""


def check_assertion(text: str, now: float | None) -> str:
    """The assertion in `text` (a signed JWT, surrounding whitespace dropped); with `now`, also
    that it has not expired. Raises AssertionProblem."""
    assertion = text.strip()
    if assertion.count(".") != 2:
        raise AssertionProblem("is not a JWT (three dot-separated parts, a signed JWS)")
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError as e:
        raise AssertionProblem(f"is not a JWT ({type(e).__name__})") from None
    if str(header.get("alg", "none")).lower() == "none":
        raise AssertionProblem("holds an unsigned JWT (alg none), which no server accepts")
    expiry = claims.get("exp")
    if now is not None and isinstance(expiry, int | float) and expiry <= now:
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expiry))
        raise AssertionProblem(
            f"holds an assertion that expired at {at} ({now - expiry:.0f} s ago): "
            "is whatever rotates it still running?"
        )
    return assertion


def read_assertion(path: str, now: float) -> str:
    """The assertion in `path`, as it is now; TokenError (naming the file, never its content)
    when it cannot be read or would be refused for what it is."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise TokenError(f"cannot read the client assertion file {path} ({why})") from None
    try:
        return check_assertion(text, now)
    except AssertionProblem as e:
        raise TokenError(f"client assertion file {path} {e}") from None


def read_actor_token(path: str) -> str:
    """token_exchange's actor token (RFC 8693 §2.1) as its file holds it now: the platform
    that writes it rotates it. TokenError names the file, never its content."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise TokenError(f"cannot read the actor token file {path} ({why})") from None
    if not text or not (text.isascii() and text.isprintable()):
        raise TokenError(f"the actor token file {path} holds no token (one line of ASCII)")
    return text
