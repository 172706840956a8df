"""What a backend's authorization server needs to hear from us: the token request's grant (client
credentials, a JWT, the caller's own token to exchange, or a user's refresh token or password)
and how the client authenticates."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from dataclasses import field

# Renewal starts this long before expiry (at most half the lifetime, see tokens.policy).
DEFAULT_REFRESH_MARGIN = 30.0


class Secret:
    """A string that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class AuthMethod(enum.StrEnum):
    """How the client authenticates at the token endpoint (RFC 6749 §2.3, OAuth registry names)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    CLIENT_SECRET_JWT = "client_secret_jwt"  # RFC 7523, HMAC over the secret
    PRIVATE_KEY_JWT = "private_key_jwt"  # RFC 7523, signed with the client's private key
    TLS_CLIENT_AUTH = "tls_client_auth"  # RFC 8705, the client certificate authenticates
    # RFC 8705 §2.2: a self-signed certificate, registered with the server (its JWKS or itself)
    SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"
    # RFC 7521 §4.2 with an assertion the platform issues (workload identity): read from a file
    CLIENT_ASSERTION = "client_assertion"
    # jwt_bearer: the grant's own assertion is the proof (RFC 7523 §2.1); refresh_token and
    # password: a public client (RFC 6749 §2.1), which sends only its client_id
    NONE = "none"

    @property
    def uses_certificate(self) -> bool:
        return self in (AuthMethod.TLS_CLIENT_AUTH, AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH)

    @property
    def uses_secret(self) -> bool:
        return self in (
            AuthMethod.CLIENT_SECRET_BASIC,
            AuthMethod.CLIENT_SECRET_POST,
            AuthMethod.CLIENT_SECRET_JWT,
        )


class BasicEncoding(enum.StrEnum):
    """client_secret_basic: form-urlencode id and secret first (RFC 6749 §2.3.1), or not."""

    FORM = "form"
    RAW = "raw"  # for servers that do not decode; never chosen automatically


class GrantType(enum.StrEnum):
    """What the token request asks with (RFC 6749 §4.4, §6 and §4.3, RFC 7523 §2.1, RFC 8693
    §2.1)."""

    CLIENT_CREDENTIALS = "client_credentials"
    JWT_BEARER = "jwt_bearer"
    TOKEN_EXCHANGE = "token_exchange"  # for the caller: its own token is the subject
    REFRESH_TOKEN = "refresh_token"  # as one user, with a refresh token given once
    PASSWORD = "password"  # as one user, with its password (legacy backends only)

    @property
    def parameter(self) -> str:
        """The `grant_type` sent."""
        if self is GrantType.JWT_BEARER:
            return "urn:ietf:params:oauth:grant-type:jwt-bearer"
        if self is GrantType.TOKEN_EXCHANGE:
            return "urn:ietf:params:oauth:grant-type:token-exchange"
        return self.value


# RFC 8693 §3: the token type identifiers, by the short names the configuration may use.
TOKEN_TYPE_PREFIX = "urn:ietf:params:oauth:token-type:"
TOKEN_TYPES = ("access_token", "refresh_token", "id_token", "saml1", "saml2", "jwt")
ACCESS_TOKEN_TYPE = TOKEN_TYPE_PREFIX + "access_token"


@dataclass(frozen=True)
class Exchange:
    """token_exchange (RFC 8693 §2.1): what is asked for with the caller's token. The actor
    token (delegation: who acts for the caller) is read from its file for each exchange, as the
    platform that writes it rotates it."""

    subject_token_type: str = ACCESS_TOKEN_TYPE
    requested_token_type: str | None = None
    actor_token_file: str | None = None
    actor_token_type: str | None = None


@dataclass(frozen=True)
class UserGrant:
    """refresh_token and password: the user the proxy acts as. `refresh_token`: the one the
    configuration gives (for refresh_token; a password grant gets its own from the server);
    once the server rotates it, the store's newest is used instead (see tokens.broker)."""

    refresh_token: Secret | None = field(default=None, repr=False)
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SubjectToken:
    """The caller's token that a token_exchange grant is asked for with (never shown).
    `expires`: its JWT `exp` (epoch seconds), beyond which no exchanged token is used.
    `fingerprint`: what flows show of it, as of every token (the first 12 hex digits of its
    SHA-256), computed once per caller."""

    # A str hidden from the repr, as Token's access token, not a Secret: one object fewer per
    # caller for the garbage collector to walk in each full collection.
    value: str = field(repr=False)
    expires: float | None = None
    fingerprint: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(self.value.encode()).hexdigest()[:12]
        object.__setattr__(self, "fingerprint", digest)


class AssertionAudience(enum.StrEnum):
    """The `aud` of a JWT client assertion (RFC 7523 §3)."""

    TOKEN_ENDPOINT = "token_endpoint"
    ISSUER = "issuer"  # what draft-ietf-oauth-rfc7523bis and FAPI 2.0 ask for


@dataclass(frozen=True)
class SigningKey:
    """private_key_jwt: a PEM private key and how to sign with it."""

    path: str
    pem: Secret = field(repr=False)
    algorithm: str
    key_id: str | None = None


@dataclass(frozen=True)
class BearerAssertion:
    """jwt_bearer: the JWT the grant is made of (RFC 7523 §3), signed with `key`.

    `audience` None: the token endpoint. `scope_claim`: the scope travels in the assertion, as
    Google's service accounts want it, not as a parameter. `lifetime`: seconds until `exp`.
    """

    key: SigningKey
    issuer: str
    subject: str | None
    audience: str | None
    lifetime: int
    scope_claim: bool = False


@dataclass(frozen=True)
class DpopKey:
    """A DPoP key (RFC 9449): the private key (PEM, never shown), its JWS algorithm, its public
    JWK (what each proof carries) and that JWK's RFC 7638 thumbprint (what a bound token's
    `cnf.jkt` names). Made by client.dpop.load_dpop_key.

    `generated`: made by the proxy, not read from a file. Such a key travels with its token
    through the store (sealed like it), so that every process sharing the token can use it.
    """

    pem: Secret = field(repr=False)
    algorithm: str
    public_jwk: tuple[tuple[str, str], ...]
    thumbprint: str
    generated: bool = False


@dataclass(frozen=True)
class TlsIdentity:
    """A client certificate and its key (PEM files), presented on the token call."""

    cert_file: str
    key_file: str
    digest: str = ""  # of both files' contents: a certificate renewed in place is a new identity


@dataclass(frozen=True)
class TokenTransport:
    """How the token call itself travels: its own CA, timeout, proxy and client certificate."""

    timeout: float = 10.0
    ca_bundle: str | None = None
    proxy: str | None = None
    client_cert: TlsIdentity | None = None
    ca_digest: str = ""  # of the bundle's contents: a renewed bundle gets a new connection pool


@dataclass(frozen=True)
class ClientCredentials:
    """One grant: everything that decides which token the server issues.

    Exactly one of `token_url` and `issuer` (RFC 8414 discovery of the token endpoint) is set.
    `client_id` may be empty for jwt_bearer, where the assertion names who asks.
    """

    client_id: str
    token_url: str | None = None
    issuer: str | None = None
    auth_method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC
    client_secret: Secret | None = field(default=None, repr=False)
    basic_encoding: BasicEncoding = BasicEncoding.FORM
    signing_key: SigningKey | None = None
    # client_assertion: the file the platform writes and rotates; read for each token request
    assertion_file: str | None = None
    assertion_audience: AssertionAudience = AssertionAudience.TOKEN_ENDPOINT
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    resources: tuple[str, ...] = ()
    extra_params: tuple[tuple[str, str], ...] = ()
    token_headers: tuple[tuple[str, str], ...] = ()
    transport: TokenTransport = TokenTransport()
    grant: GrantType = GrantType.CLIENT_CREDENTIALS
    bearer: BearerAssertion | None = None  # jwt_bearer
    dpop: DpopKey | None = None  # RFC 9449: the token is bound to this key
    exchange: Exchange | None = None  # token_exchange
    user: UserGrant | None = None  # refresh_token and password

    @property
    def scope(self) -> str | None:
        """The `scope` parameter as sent: space-separated, or None when no scope is asked for."""
        return " ".join(self.scopes) if self.scopes else None

    def identity(self, subject: SubjectToken | None = None) -> list[object]:
        """Everything that decides which token is issued, order-insensitive where the request is;
        `subject`: token_exchange's caller token, which the grant holds.

        Contains secret material: only ever fed to a keyed hash (see store.base.derive_cache_key).
        """
        return [
            self.token_url,
            self.issuer,
            self.client_id,
            self.auth_method.value,
            self.client_secret.reveal() if self.client_secret else None,
            self.basic_encoding.value,
            self.signing_key.pem.reveal() if self.signing_key else None,
            self.signing_key.algorithm if self.signing_key else None,
            self.signing_key.key_id if self.signing_key else None,
            # Where the assertion is, not what it says: a rotated one is the same identity.
            self.assertion_file,
            self.grant.value,
            [
                self.bearer.key.pem.reveal(),
                self.bearer.key.algorithm,
                self.bearer.key.key_id,
                self.bearer.issuer,
                self.bearer.subject,
                self.bearer.audience,
                self.bearer.scope_claim,
            ]
            if self.bearer
            else None,
            self._dpop_identity(),
            self.assertion_audience.value,
            sorted(self.scopes),
            self.audience,
            sorted(self.resources),
            sorted(self.extra_params),
            sorted((name.lower(), value) for name, value in self.token_headers),
            [
                self.transport.client_cert.cert_file,
                self.transport.client_cert.key_file,
                self.transport.client_cert.digest,
            ]
            if self.transport.client_cert
            else None,
            *self._exchange_identity(subject),
            *self._user_identity(),
        ]

    def _user_identity(self) -> list[object]:
        # The configured refresh token, not the rotated one: a token given anew by hand (after
        # a person signed in again) is a new grant, whose store entries start empty.
        if self.user is None:
            return []
        user = self.user
        return [
            user.refresh_token.reveal() if user.refresh_token else None,
            user.username,
            user.password.reveal() if user.password else None,
        ]

    def _exchange_identity(self, subject: SubjectToken | None) -> list[object]:
        # Nothing for the other grants: their identities, and so their cache keys, stay as they
        # were before token exchange existed.
        if self.exchange is None:
            return []
        exchange = self.exchange
        return [
            exchange.subject_token_type,
            exchange.requested_token_type,
            exchange.actor_token_file,  # where it is, not what it says: it is rotated
            exchange.actor_token_type,
            subject.value if subject else None,
        ]

    def _dpop_identity(self) -> list[str] | None:
        if self.dpop is None:
            return None
        # A generated key is each process's own: the processes sharing a store share the token
        # (and its key, see DpopKey), so that key cannot be part of the token's identity.
        if self.dpop.generated:
            return ["generated"]
        return [self.dpop.pem.reveal(), self.dpop.algorithm]


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """One backend's token: the credentials to ask with, our cap on a token's age, and how
    long before expiry to renew it (see tokens.policy.safety_margin). token_exchange makes one
    per caller, whose token is its `subject` (see tokens.subjects): the backend's credentials
    are shared by all of them, not copied."""

    backend: str
    credentials: ClientCredentials
    max_token_age: float
    refresh_margin: float = DEFAULT_REFRESH_MARGIN
    subject: SubjectToken | None = field(default=None, repr=False)
    # The broker looks tokens up by grant on every request: hash the nested credentials once.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        fields = (
            self.backend,
            self.credentials,
            self.max_token_age,
            self.refresh_margin,
            self.subject,
        )
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    def for_subject(self, subject: SubjectToken) -> TokenGrant:
        """token_exchange: this backend's grant for one caller's token."""
        return TokenGrant(
            self.backend, self.credentials, self.max_token_age, self.refresh_margin, subject
        )
