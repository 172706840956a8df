"""Client authentication at the token endpoint: one method per request (RFC 6749 §2.3)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import quote_plus

import jwt

from ..model.credentials import AssertionAudience
from ..model.credentials import AuthMethod
from ..model.credentials import BasicEncoding
from ..model.credentials import ClientCredentials
from ..model.credentials import SigningKey

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# A client assertion only has to survive the token call it is made for.
ASSERTION_LIFETIME = 60


@dataclass(frozen=True)
class ClientAuthentication:
    """What a token request carries to authenticate the client: headers and form fields."""

    headers: dict[str, str] = field(default_factory=dict, repr=False)
    form: dict[str, str] = field(default_factory=dict, repr=False)
    # Every credential value it carries, in any form, to scrub from what a server echoes back.
    secrets: tuple[str, ...] = field(default=(), repr=False)


def basic_credentials(client_id: str, client_secret: str, encoding: BasicEncoding) -> str:
    """The `Authorization` value for client_secret_basic.

    RFC 6749 §2.3.1: each part is form-urlencoded before joining, so a ':' '%' '+' '&' or space
    in a secret survives (the seed recipe's plain base64 of `id:secret` breaks on those). `raw`
    skips that for servers that do not decode.
    """
    if encoding is BasicEncoding.FORM:
        client_id, client_secret = (
            quote_plus(client_id, safe=""),
            quote_plus(client_secret, safe=""),
        )
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")


def assertion_claims(
    issuer: str, subject: str | None, audience: str | None, now: float, lifetime: int
) -> dict[str, object]:
    """RFC 7523 §3: iss, sub (when there is one), aud, iat, exp, and a new `jti` every time."""
    claims: dict[str, object] = {"iss": issuer}
    if subject is not None:
        claims["sub"] = subject
    claims |= {"aud": audience, "iat": int(now), "exp": int(now) + lifetime}
    claims["jti"] = uuid.uuid4().hex
    return claims


def signed(claims: dict[str, object], key: SigningKey) -> str:
    """`claims` as a JWT signed with `key` (its `kid` in the header, when it has one)."""
    headers = {"kid": key.key_id} if key.key_id else None
    return jwt.encode(claims, key.pem.reveal(), algorithm=key.algorithm, headers=headers)


def client_assertion(credentials: ClientCredentials, token_endpoint: str, now: float) -> str:
    """A signed JWT client assertion (RFC 7523 §2.2, §3): the client is issuer and subject."""
    client_id = credentials.client_id
    audience = (
        credentials.issuer
        if credentials.assertion_audience is AssertionAudience.ISSUER
        else token_endpoint
    )
    claims = assertion_claims(client_id, client_id, audience, now, ASSERTION_LIFETIME)
    if credentials.auth_method is AuthMethod.CLIENT_SECRET_JWT:
        assert credentials.client_secret is not None  # config requires it for this method
        return jwt.encode(claims, credentials.client_secret.reveal(), algorithm="HS256")
    key = credentials.signing_key
    assert key is not None  # config requires it for private_key_jwt
    return signed(claims, key)


def authenticate(
    credentials: ClientCredentials, token_endpoint: str, now: float, assertion: str | None = None
) -> ClientAuthentication:
    """`assertion`: for client_assertion, what its file holds now (see client.assertion)."""
    method = credentials.auth_method
    client_id = credentials.client_id
    if method is AuthMethod.CLIENT_SECRET_BASIC:
        assert credentials.client_secret is not None  # config requires it for this method
        secret = credentials.client_secret.reveal()
        value = basic_credentials(client_id, secret, credentials.basic_encoding)
        return ClientAuthentication(
            headers={"Authorization": value}, secrets=(secret, value, value.removeprefix("Basic "))
        )
    if method is AuthMethod.CLIENT_SECRET_POST:
        assert credentials.client_secret is not None  # config requires it for this method
        secret = credentials.client_secret.reveal()
        return ClientAuthentication(
            form={"client_id": client_id, "client_secret": secret}, secrets=(secret,)
        )
    if method is AuthMethod.NONE:
        # A public client acting for a user names itself (RFC 6749 §3.2.1); for jwt_bearer the
        # assertion names who asks.
        public = credentials.user is not None
        return ClientAuthentication(form={"client_id": client_id} if public else {})
    if method.uses_certificate:
        # RFC 8705 §2: the certificate authenticates; client_id says which client it is.
        return ClientAuthentication(form={"client_id": client_id})
    if method is AuthMethod.CLIENT_ASSERTION:
        assert assertion is not None  # the token client reads it for every request
        form = {"client_id": client_id, "client_assertion_type": JWT_BEARER}
        return ClientAuthentication(
            form=form | {"client_assertion": assertion}, secrets=(assertion,)
        )
    assertion = client_assertion(credentials, token_endpoint, now)
    hmac_key = credentials.client_secret  # client_secret_jwt signs with the secret
    return ClientAuthentication(
        form={
            "client_id": client_id,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
        },
        secrets=(assertion,) if hmac_key is None else (assertion, hmac_key.reveal()),
    )
