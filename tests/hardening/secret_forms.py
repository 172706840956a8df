"""What the secret hygiene test looks for: every credential of its run, in every form a log
line, a URL, JSON or a header would carry it, and the lines where mitmproxy itself shows the
injected header by design."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import jwt

from tests.support.devservers import basic_auth

TOKEN_PREFIX = "HYGTOK"
SECRET_BASIC = "HygBasic-s3cr3t: +%&/="
SECRET_POST = "HygPost-s3cr3t/+ %&="
SECRET_HS = "HygHmac-s3cr3t of more than thirty-two bytes: %&+"
CLIENTS = {"hyg-basic": SECRET_BASIC, "hyg-post": SECRET_POST, "hyg-hs": SECRET_HS}
WORKLOAD_CLIENT = "hyg-wi"  # client_assertion: a platform's token from a file
PLATFORM = "https://kubernetes.default.svc.cluster.local"
WORKLOAD = "system:serviceaccount:hygiene:app"

# A JSON Web Token: a client assertion, whoever signed it.
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
# mitmproxy's dumper printing the request header the addon injected (flow_detail >= 2).
DUMPED_HEADER = re.compile(rf"^\s*authorization: Bearer {TOKEN_PREFIX}[A-Za-z0-9_-]+\s*$", re.I)
# proxy_debug: mitmproxy's trace of the bytes it sends the backend, that header among them.
SENT_TO_SERVER = re.compile(
    rf"<< SendData\(server, b['\"].*\\r\\nauthorization: Bearer {TOKEN_PREFIX}", re.I
)


def encodings(value: str) -> set[bytes]:
    """`value` as written and as the encodings a log, a URL, JSON or a header would use."""
    raw = value.encode()
    forms = {
        value,
        urllib.parse.quote_plus(value),
        urllib.parse.quote(value, safe=""),
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    return {form.encode() for form in forms}


def payload_prefix(client_id: str) -> bytes:
    """The start of a client assertion's base64url payload for `client_id` (PyJWT writes the
    claims compactly, in the order given, `iss` first)."""
    claims = json.dumps({"iss": client_id, "sub": client_id}, separators=(",", ":"))[:-1]
    whole = len(claims) // 3 * 3  # base64 of whole 3-byte groups does not depend on what follows
    return base64.urlsafe_b64encode(claims[:whole].encode())


@dataclass
class Credentials:
    """Every credential of the run, by name, in every form searched for."""

    secrets: dict[str, set[bytes]] = field(default_factory=dict)  # secrets, Basic, keys, JWTs
    tokens: set[bytes] = field(default_factory=set)  # access tokens

    def hits(self, blob: bytes, *, tokens: bool = True) -> list[str]:
        found = [name for name, forms in self.secrets.items() if any(f in blob for f in forms)]
        if JWT.search(blob):
            found.append("a JWT (client assertion)")
        if tokens:
            found += [f"token form {t[:12]!r}" for t in self.tokens if t in blob]
        return found


def platform_assertion(private_key: Path) -> str:
    """The workload's token as a platform issues it, signed with the platform's key."""
    now = int(time.time())
    claims = {"iss": PLATFORM, "sub": WORKLOAD, "aud": WORKLOAD_CLIENT, "exp": now + 3600}
    return jwt.encode(claims, private_key.read_bytes(), algorithm="RS256")


def credentials(private_key: Path, assertion: str) -> Credentials:
    found = Credentials()
    for client_id, secret in CLIENTS.items():
        found.secrets[f"secret of {client_id}"] = encodings(secret)
    basic = basic_auth("hyg-basic", SECRET_BASIC)
    raw_basic = base64.b64encode(f"hyg-basic:{SECRET_BASIC}".encode()).decode()
    found.secrets["Basic value"] = encodings(basic) | encodings(basic.removeprefix("Basic "))
    found.secrets["Basic value"] |= encodings(raw_basic)
    key_lines = [line for line in private_key.read_text().splitlines() if "-----" not in line]
    found.secrets["private key"] = {line.encode() for line in key_lines[:3]}
    for client_id in ("hyg-hs", "hyg-rs"):
        found.secrets[f"assertion of {client_id}"] = {payload_prefix(client_id)}
    found.secrets["platform assertion"] = encodings(assertion) | {
        part.encode() for part in assertion.split(".")[1:]
    }
    found.tokens = encodings(TOKEN_PREFIX)
    return found
