"""Client authentication at the dev token endpoint, one method per request (RFC 6749 §2.3):
client_secret_basic (§2.3.1), client_secret_post, JWT client assertions (RFC 7523: HS* over the
secret for client_secret_jwt, RS/PS/ES with a registered public key for private_key_jwt, or
a federated platform's assertion for a registered workload) and tls_client_auth (RFC 8705: a
verified client certificate mapped to the client); and the JWT-bearer grant's assertion
(RFC 7523 §2.1), which may come without any client authentication."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.x509.oid import NameOID

from .clients import Client
from .state import State

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
AUTH_METHODS = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
)


class AuthFailure(Exception):
    """The request is refused: an OAuth error answer (RFC 6749 §5.2)."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


@dataclass(frozen=True)
class Presented:
    """What a token request offers to authenticate its client."""

    form: dict[str, str]
    authorization: list[str]  # every Authorization header
    peer_cert: bytes | None  # DER of the client certificate, verified by the TLS handshake
    audiences: tuple[str, ...]  # the `aud` values a client assertion may name


def _invalid_client(description: str) -> AuthFailure:
    return AuthFailure(401, "invalid_client", description)


def _offered(presented: Presented) -> list[bool]:
    """Which client authentications the request offers: Basic, a secret, an assertion."""
    form = presented.form
    offered = [bool(presented.authorization), "client_secret" in form]
    offered.append("client_assertion" in form or "client_assertion_type" in form)
    return offered


def authenticate(state: State, presented: Presented, entry: dict[str, Any]) -> str:
    """The id of the authenticated client; how it authenticated goes into the log `entry`."""
    form, headers = presented.form, presented.authorization
    if presented.peer_cert is not None:
        entry.update(_describe_cert(presented.peer_cert))
    offered = _offered(presented)
    if sum(offered) > 1 or len(headers) > 1:
        raise AuthFailure(400, "invalid_request", "more than one client authentication")
    if headers:
        entry["auth"] = headers[0].partition(" ")[0].lower()  # "basic", normally
        creds = _decode_basic(headers[0], decode=state.configure({})["basic_decode"])
        if creds is None:
            raise _invalid_client("malformed Basic credentials")
        if form.get("client_id", creds[0]) != creds[0]:
            raise AuthFailure(400, "invalid_request", "client_id differs from Basic credentials")
    elif "client_secret" in form:
        entry["auth"] = "post"
        creds = (form.get("client_id", ""), form["client_secret"])
    elif offered[2]:
        return _verify_assertion(state, presented, entry)
    elif presented.peer_cert is not None and "client_id" in form:
        return _verify_certificate(state, form["client_id"], entry)
    else:
        raise _invalid_client("no client authentication")
    entry["client_id"] = creds[0]
    if not state.check_client(*creds):
        raise _invalid_client("unknown client or wrong secret")
    return creds[0]


def _decode_basic(value: str, *, decode: bool) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: base64, split on the first ':', then form-urldecode each part
    (unless `decode` is off, as on servers that take the credentials literally)."""
    scheme, _, encoded = value.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError
        return None
    user, sep, password = decoded.partition(":")
    if scheme.lower() != "basic" or not sep:
        return None
    if not decode:
        return user, password
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


def _describe_cert(der: bytes) -> dict[str, Any]:
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = names[0].value if names else None
    return {
        "cert_cn": common_name if isinstance(common_name, str) else None,
        "cert_sha256": hashlib.sha256(der).hexdigest(),
    }


def _verify_certificate(state: State, client_id: str, entry: dict[str, Any]) -> str:
    """RFC 8705 §2.1: the certificate the handshake verified must be the one registered."""
    entry.update(auth="tls_client_auth", client_id=client_id)
    client = state.clients.get(client_id)
    if client is None or not client.cert_matches(entry["cert_cn"], entry["cert_sha256"]):
        raise _invalid_client("client certificate is not registered for this client")
    return client_id


def _verify_federated(
    client: Client,
    client_id: str,
    assertion: str,
    alg: str,
    presented: Presented,
    entry: dict[str, Any],
) -> str:
    """Workload identity federation: the platform's assertion for the registered workload."""
    entry["auth"] = "federated"
    assert client.federated_key is not None  # parse_clients keeps the three together
    audiences = [client.federated_audience] if client.federated_audience else presented.audiences
    try:
        claims = jwt.decode(
            assertion,
            client.federated_key,
            algorithms=[alg],
            audience=list(audiences),
            issuer=client.federated_issuer,
            options={"require": ["iss", "sub", "aud", "exp"]},
        )
    except jwt.PyJWTError as e:
        raise _invalid_client(f"client_assertion rejected ({e})") from e
    entry["assertion"] = {k: claims.get(k) for k in ("iss", "sub", "aud", "iat", "exp", "jti")}
    if claims["sub"] != client.federated_subject:
        raise _invalid_client("client_assertion sub is not the workload registered")
    return client_id


def _verify_assertion(state: State, presented: Presented, entry: dict[str, Any]) -> str:
    """RFC 7523 §3: signature, iss = sub = client, aud, exp, and a jti never seen before."""
    form = presented.form
    if form.get("client_assertion_type") != JWT_BEARER or "client_assertion" not in form:
        raise AuthFailure(400, "invalid_request", "client_assertion_type must be jwt-bearer")
    assertion = form["client_assertion"]
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise _invalid_client(f"malformed client_assertion ({e})") from e
    alg = header.get("alg")
    entry.update(jwt_alg=alg, jwt_kid=header.get("kid"), jwt_typ=header.get("typ"))
    client_id = form.get("client_id", unverified.get("sub"))
    if not isinstance(client_id, str):
        raise _invalid_client("client_assertion names no client")
    entry["client_id"] = client_id
    client = state.clients.get(client_id)
    if client is not None and client.federated_issuer is not None and alg in KEY_ALGORITHMS:
        return _verify_federated(client, client_id, assertion, alg, presented, entry)
    if alg in HMAC_ALGORITHMS:
        entry["auth"], key = "client_secret_jwt", None if client is None else client.secret
    elif alg in KEY_ALGORITHMS:
        entry["auth"], key = "private_key_jwt", None if client is None else client.public_key
    else:
        raise _invalid_client(f"unsupported client_assertion alg {alg!r}")
    if key is None:
        raise _invalid_client(f"unknown client or no {entry['auth']} key registered")
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[alg],
            audience=list(presented.audiences),
            issuer=client_id,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.PyJWTError as e:
        raise _invalid_client(f"client_assertion rejected ({e})") from e
    entry["assertion"] = {k: claims.get(k) for k in ("iss", "sub", "aud", "iat", "exp", "jti")}
    if claims["sub"] != client_id:
        raise _invalid_client("client_assertion sub is not the client")
    if not state.use_jti(client_id, str(claims["jti"])):
        raise _invalid_client("client_assertion jti already used")
    return client_id


def authorize_bearer_grant(state: State, presented: Presented, entry: dict[str, Any]) -> str:
    """RFC 7523 §2.1: the grant's `assertion`, signed with the public key registered for the
    client its `iss` names (as a service account's), for one of our audiences and unexpired;
    a client authentication, if one is offered as well, must hold too (§3.1: it is optional).
    Google's assertions carry no `sub`, and their scope as a claim. The client's id."""
    if any(_offered(presented)):
        authenticate(state, presented, entry)
    else:
        entry["auth"] = "none"
    assertion = presented.form.get("assertion")
    if assertion is None:
        raise AuthFailure(400, "invalid_request", "the jwt-bearer grant needs an assertion")
    try:
        alg = jwt.get_unverified_header(assertion).get("alg")
        issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError as e:
        raise AuthFailure(400, "invalid_grant", f"malformed assertion ({e})") from e
    client = state.clients.get(issuer) if isinstance(issuer, str) else None
    if client is None or client.public_key is None or alg not in KEY_ALGORITHMS:
        raise AuthFailure(400, "invalid_grant", "assertion from an unknown issuer")
    try:
        claims = jwt.decode(
            assertion,
            client.public_key,
            algorithms=[alg],
            audience=list(presented.audiences),
            issuer=issuer,
            options={"require": ["iss", "aud", "exp"]},
        )
    except jwt.PyJWTError as e:
        raise AuthFailure(400, "invalid_grant", f"assertion rejected ({e})") from e
    entry["grant_assertion"] = {k: claims.get(k) for k in ("iss", "sub", "aud", "scope", "exp")}
    entry["client_id"] = entry.get("client_id") or issuer
    return str(issuer)
