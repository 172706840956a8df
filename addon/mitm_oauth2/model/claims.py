"""What a JWT access token says of itself (RFC 9068's claims): read from its payload for people
debugging a call, never verified and never trusted by the proxy, which only forwards the token.

Read with the standard library rather than PyJWT: only the payload is decoded (the signature is
not checked, nor kept), and the layers that use tokens stay free of cryptography libraries.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

# The claims shown, in this order: who issued it, for whom, for what, to which client, when.
SHOWN = ("iss", "sub", "aud", "scope", "scp", "azp", "client_id", "iat", "exp")
OPAQUE = "opaque"  # what is shown of a token that is not a JWT
MAX_TOKEN_CHARS = 16384  # a longer "JWT" is not decoded: what it says is not worth the memory
MAX_VALUE_CHARS = 200  # per claim shown: an audience list or a scope string stays readable


@dataclass(frozen=True)
class Claims:
    """The shown claims of a JWT access token, decoded and not verified (`shown` says so)."""

    shown: dict[str, object]  # JSON-safe, with "verified": False; never changed
    audiences: tuple[str, ...]
    scopes: tuple[str, ...]  # `scope` (space-separated) or `scp` (a list, as Entra ID's)
    summary: str  # a few words for a flow's comment: `aud orders-api · scope read write`
    expires: float | None = None  # `exp`, epoch seconds, when it is a number


def shown(claims: Claims | None) -> dict[str, object] | str:
    """What a flow or the status shows of a token: a copy of its claims, or "opaque"."""
    return OPAQUE if claims is None else dict(claims.shown)


def read_claims(access_token: str) -> Claims | None:
    """The claims of a JWT (three base64url parts, a JSON object in the middle); None for an
    opaque token, or anything that does not decode as one."""
    if len(access_token) > MAX_TOKEN_CHARS or access_token.count(".") != 2:
        return None
    payload = access_token.split(".")[1]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # not base64url, UTF-8 or JSON
        return None
    if not isinstance(decoded, dict):
        return None
    shown: dict[str, object] = {"verified": False}
    for name in SHOWN:
        value = _json_safe(decoded.get(name))
        if value is not None:
            shown[name] = value
    scopes = _words(decoded.get("scope")) or _words(decoded.get("scp"))
    audience = decoded.get("aud")
    audiences = [audience] if isinstance(audience, str) else _words(audience)
    parts = [f"aud {' '.join(audiences)}"] if audiences else []
    parts += [f"scope {' '.join(scopes)}"] if scopes else []
    exp = shown.get("exp")
    expires = float(exp) if isinstance(exp, int | float) else None
    return Claims(shown, tuple(audiences), tuple(scopes), _cut(" · ".join(parts)), expires)


def _words(value: object) -> list[str]:
    """A space-separated string's words, or a list's strings."""
    if isinstance(value, str):
        return value.split()
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _json_safe(value: object) -> object:
    """A claim as shown: a string (cut), a number, or a list of strings; else left out."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, list):
        return [_cut(item) for item in value if isinstance(item, str)][:20]
    return None


def _cut(text: str) -> str:
    # A lone surrogate ("\ud800" in the JSON) could not be saved with the flow: replaced.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
