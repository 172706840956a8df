"""What the secret hygiene test looks for: every credential of its run, in every form a log
line, a URL, JSON or a header would carry it, the lines where mitmproxy itself shows the
injected headers by design, and those where it shows them redacted."""

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

from mitm_oauth2.devservers.clients import DEFAULT_USERS
from tests.support.devservers import basic_auth
from tests.support.key_material import KeyPair

TOKEN_PREFIX = "HYGTOK"
SECRET_BASIC = "HygBasic-s3cr3t: +%&/="
SECRET_POST = "HygPost-s3cr3t/+ %&="
SECRET_HS = "HygHmac-s3cr3t of more than thirty-two bytes: %&+"
SECRET_DPOP = "HygDpop-s3cr3t &%+: /="
SECRET_EXCHANGE = "HygExch-s3cr3t =/+%& :"
SECRET_PHANTOM = "HygPhan-s3cr3t :%/=&+"
SECRET_REFRESH = "HygRefr-s3cr3t +&%/ =:"
SECRET_PASSWORD = "HygPass-s3cr3t &=:/%+ "
CLIENTS = {
    "hyg-basic": SECRET_BASIC,
    "hyg-post": SECRET_POST,
    "hyg-hs": SECRET_HS,
    "hyg-dpop": SECRET_DPOP,
    "hyg-tx": SECRET_EXCHANGE,  # token_exchange: the proxy's own client
    "hyg-ph": SECRET_PHANTOM,  # phantom: the real client, whose token the phantom stands for
    "hyg-rt": SECRET_REFRESH,  # refresh_token: acting as a user who signed in once
    "hyg-pw": SECRET_PASSWORD,  # password: acting as a user with its password
}
# The password grant's user, and its password (the dev server's own user).
USERNAME = "demo-user"
USER_PASSWORD = DEFAULT_USERS[USERNAME]
# The sandboxed SDK's credentials, dummies: they never leave the proxy.
SDK_ID, SDK_SECRET = "hyg-sdk", "HygSdk-dummy"
WORKLOAD_CLIENT = "hyg-wi"  # client_assertion: a platform's token from a file
PLATFORM = "https://kubernetes.default.svc.cluster.local"
WORKLOAD = "system:serviceaccount:hygiene:app"
BEARER_ISSUER = "hyg-jb"  # jwt_bearer: the assertion's issuer, as a service account
BEARER_SUBJECT = "hygiene-user@example.com"  # ... for this user

# A JSON Web Token: a client assertion, a grant's assertion or a DPoP proof, whoever signed it.
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
A_PROOF = "a DPoP proof"
# mitmproxy's dumper printing the request headers the addon injected (flow_detail >= 2), as
# oauth2_redact leaves them once the request went upstream.
REDACTED_HEADER = re.compile(
    r"^\s*authorization: (Bearer|DPoP) \[redacted [0-9a-f]{12}\]\s*$", re.I
)
REDACTED_PROOF = re.compile(r"^\s*dpop: \[redacted\]\s*$", re.I)
# proxy_debug: mitmproxy's trace of the bytes it sends the backend, those headers among them.
SENT_TO_SERVER = re.compile(
    rf"<< SendData\(server, b['\"].*\\r\\nauthorization: (Bearer|DPoP) {TOKEN_PREFIX}", re.I
)
# ... and of the bytes it received from a client: the token that a token-exchange caller or a
# sandboxed SDK sent, as it sent it.
RECEIVED_FROM_CLIENT = re.compile(
    r">> DataReceived\(client, b['\"].*\\r\\nauthorization: Bearer ", re.I
)
# The phantom token answer the SDK got: its body as mitmdump dumps it (flow_detail 4), and as
# proxy_debug traces its sending.
PHANTOM_ANSWER = re.compile(
    r"""^\s*"access_token": "phantom\.[\w-]+",$"""
    r"""|(SendData\(client, |ResponseData\(stream_id=\d+, data=)b'\{"access_token": "phantom\."""
)


@dataclass(frozen=True)
class Keys:
    """The run's private keys: private_key_jwt's, the JWT-bearer grant's and a DPoP key file."""

    client: KeyPair
    grant: KeyPair
    dpop: Path


def jwt_kind(token: bytes) -> str:
    """A DPoP proof (its header's `typ`), or any other JWT: an assertion."""
    try:
        typ = jwt.get_unverified_header(token).get("typ")
    except jwt.PyJWTError:
        typ = None
    return A_PROOF if typ == "dpop+jwt" else "a JWT (client assertion)"


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


def payload_prefix(issuer: str, subject: str) -> bytes:
    """The start of an assertion's base64url payload (PyJWT writes the claims compactly, in
    the order given, `iss` and `sub` first)."""
    claims = json.dumps({"iss": issuer, "sub": subject}, separators=(",", ":"))[:-1]
    whole = len(claims) // 3 * 3  # base64 of whole 3-byte groups does not depend on what follows
    return base64.urlsafe_b64encode(claims[:whole].encode())


@dataclass
class Credentials:
    """Every credential of the run, by name, in every form searched for."""

    secrets: dict[str, set[bytes]] = field(default_factory=dict)  # secrets, Basic, keys, JWTs
    tokens: set[bytes] = field(default_factory=set)  # access tokens

    def hits(self, blob: bytes, *, tokens: bool = True) -> list[str]:
        found = [name for name, forms in self.secrets.items() if any(f in blob for f in forms)]
        found += sorted({jwt_kind(match) for match in JWT.findall(blob)})
        if tokens:
            found += [f"token form {t[:12]!r}" for t in self.tokens if t in blob]
        return found


def platform_assertion(private_key: Path) -> str:
    """The workload's token as a platform issues it, signed with the platform's key."""
    now = int(time.time())
    claims = {"iss": PLATFORM, "sub": WORKLOAD, "aud": WORKLOAD_CLIENT, "exp": now + 3600}
    return jwt.encode(claims, private_key.read_bytes(), algorithm="RS256")


def key_forms(pem: str) -> set[bytes]:
    """A PEM key's first base64 lines, each enough to be that key."""
    lines = [line for line in pem.splitlines() if "-----" not in line]
    return {line.encode() for line in lines[:3]}


def credentials(keys: Keys, assertion: str, made_keys: list[str]) -> Credentials:
    found = Credentials()
    for client_id, secret in CLIENTS.items():
        found.secrets[f"secret of {client_id}"] = encodings(secret)
    basic = basic_auth("hyg-basic", SECRET_BASIC)
    raw_basic = base64.b64encode(f"hyg-basic:{SECRET_BASIC}".encode()).decode()
    found.secrets["Basic value"] = encodings(basic) | encodings(basic.removeprefix("Basic "))
    found.secrets["Basic value"] |= encodings(raw_basic)
    found.secrets["private key"] = key_forms(keys.client.private_key.read_text())
    found.secrets["JWT-bearer grant key"] = key_forms(keys.grant.private_key.read_text())
    found.secrets["DPoP key file"] = key_forms(keys.dpop.read_text())
    for n, pem in enumerate(made_keys, 1):
        found.secrets[f"DPoP key made by the proxy #{n}"] = key_forms(pem)
    for client_id in ("hyg-hs", "hyg-rs"):
        found.secrets[f"assertion of {client_id}"] = {payload_prefix(client_id, client_id)}
    found.secrets["JWT-bearer grant"] = {payload_prefix(BEARER_ISSUER, BEARER_SUBJECT)}
    found.secrets["platform assertion"] = encodings(assertion) | {
        part.encode() for part in assertion.split(".")[1:]
    }
    found.secrets[f"password of {USERNAME}"] = encodings(USER_PASSWORD)
    # Access and refresh tokens alike: the dev server issues both with the prefix.
    found.tokens = encodings(TOKEN_PREFIX)
    return found
