"""One `[[backend]]` table: where it applies, how to get its token, and how to send it on."""

from __future__ import annotations

import hashlib
import json
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ..client.assertion import AssertionProblem
from ..client.assertion import check_assertion
from ..client.auth import ASSERTION_LIFETIME
from ..client.dpop import load_dpop_key
from ..client.dpop import process_dpop_key
from ..model.credentials import ACCESS_TOKEN_TYPE
from ..model.credentials import DEFAULT_REFRESH_MARGIN
from ..model.credentials import TOKEN_TYPE_PREFIX
from ..model.credentials import TOKEN_TYPES
from ..model.credentials import AssertionAudience
from ..model.credentials import AuthMethod
from ..model.credentials import BasicEncoding
from ..model.credentials import BearerAssertion
from ..model.credentials import ClientCredentials
from ..model.credentials import DpopKey
from ..model.credentials import Exchange
from ..model.credentials import GrantType
from ..model.credentials import Secret
from ..model.credentials import SigningKey
from ..model.credentials import TlsIdentity
from ..model.credentials import TokenGrant
from ..model.credentials import TokenTransport
from ..model.credentials import UserGrant
from ..model.errors import ConfigError
from ..model.net import is_loopback
from ..tokens.subjects import DEFAULT_MAX_EXCHANGED_TOKENS
from .hosts import HostPattern
from .hosts import parse_host_pattern
from .table import TableReader
from .table import did_you_mean
from .table import reason

DEFAULT_MAX_TOKEN_AGE = 3600.0
DEFAULT_HEADER = "Authorization"
DEFAULT_HEADER_FORMAT = "Bearer {token}"
DPOP_HEADER_FORMAT = "DPoP {token}"
SECRET_KEYS = ("client_secret", "client_secret_env", "client_secret_file")
# Keys naming files the configuration depends on (the watcher follows them while running).
FILE_KEYS = (
    "client_secret_file",
    "private_key_file",
    "service_account_file",
    "dpop_key_file",
    "client_cert_file",
    "client_key_file",
    "token_ca_bundle",
    "actor_token_file",
    "refresh_token_file",
    "password_file",
)
# jwt_bearer only (private_key_file, signing_alg, key_id and assertion_audience serve it too).
BEARER_KEYS = ("service_account_file", "assertion_issuer", "assertion_subject")
# token_exchange only.
EXCHANGE_KEYS = (
    "subject_token_header",
    "subject_token_type",
    "requested_token_type",
    "actor_token_file",
    "actor_token_type",
    "max_exchanged_tokens",
)
# refresh_token only: the user's refresh token as given once (then the store's, rotated).
REFRESH_KEYS = ("refresh_token_env", "refresh_token_file")
# password only.
PASSWORD_KEYS = ("username", "password_env", "password_file")
MAX_EXCHANGED_TOKENS = 1_000_000
KEYS = frozenset(
    {"name", "hosts", "path_prefix", "token_url", "issuer", "client_id", "client_id_env"}
    | {"auth_method"}
    | {"basic_encoding", "signing_alg", "key_id", "assertion_audience", "client_assertion_file"}
    | {"grant", "service_account_file", "assertion_issuer", "assertion_subject"}
    | {"scope", "audience", "resource", "extra_params", "token_headers"}
    | {"token_timeout", "token_proxy", "max_token_age", "refresh_margin", "retry_on_401"}
    | {"header", "header_format", "allow_plain_http", "certificate_bound", "dpop", "phantom"}
    | set(EXCHANGE_KEYS)
    | set(REFRESH_KEYS)
    | set(PASSWORD_KEYS)
    | set(SECRET_KEYS)
    | set(FILE_KEYS)
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Parameters the grant itself sets: extra_params must not override them.
_RESERVED_PARAMS = frozenset(
    {"grant_type", "scope", "audience", "resource", "client_id", "client_secret"}
    | {"client_assertion", "client_assertion_type", "assertion"}
)
_RESERVED_HEADERS = frozenset(
    {"authorization", "content-type", "content-length", "host", "accept", "accept-encoding"}
    | {"transfer-encoding", "connection"}
)
_ALGORITHMS = {
    "RS256": rsa.RSAPrivateKey,
    "PS256": rsa.RSAPrivateKey,
    "ES256": ec.EllipticCurvePrivateKey,
}


@dataclass(frozen=True)
class BackendConfig:
    name: str
    hosts: tuple[HostPattern, ...]
    grant: TokenGrant
    retry_on_401: bool = True
    path_prefix: str = "/"
    header: str = DEFAULT_HEADER
    header_format: str = DEFAULT_HEADER_FORMAT
    # The token may go to these hosts over plain HTTP beyond loopback (a mesh encrypts it, say).
    allow_plain_http: bool = False
    # RFC 8705 §3: the token is bound to the token call's client certificate, which the proxy
    # then presents on its TLS connections to these hosts too.
    certificate_bound: bool = False
    # token_exchange: the header the caller's own token comes in (the subject token), and how
    # many callers' tokens are kept at most (the least recently seen forgotten first).
    subject_header: str | None = None
    max_exchanged_tokens: int = DEFAULT_MAX_EXCHANGED_TOKENS
    # Clients do OAuth themselves with dummy credentials: their token requests are answered
    # here with phantom tokens, which are swapped for the real token on the way to the backend.
    phantom: bool = False


def parse_backend(reader: TableReader) -> BackendConfig:
    name = reader.string("name")
    if not _NAME.match(name):
        raise reader.error("name", "use 1-64 letters, digits, '.', '_' or '-'")
    reader.label = f"backend '{name}'"
    unknown = sorted(set(reader.table) - KEYS)
    if unknown:
        hint = (
            did_you_mean(unknown[0], KEYS) or " (remove it; docs/configuration.md lists every key)"
        )
        raise reader.error(unknown[0], f"unknown key{hint}")
    grant = TokenGrant(
        name,
        _credentials(reader),
        max_token_age=reader.seconds("max_token_age", DEFAULT_MAX_TOKEN_AGE, minimum=1),
        refresh_margin=reader.seconds("refresh_margin", DEFAULT_REFRESH_MARGIN, minimum=0),
    )
    exchanging = grant.credentials.grant is GrantType.TOKEN_EXCHANGE
    phantom = reader.flag("phantom", False)
    if phantom and exchanging:
        raise reader.error(
            "phantom",
            'not with grant = "token_exchange": a phantom token stands for the backend\'s own '
            "token, an exchanged one for the caller's",
        )
    return BackendConfig(
        name=name,
        hosts=_hosts(reader),
        grant=grant,
        subject_header=_subject_header(reader) if exchanging else None,
        max_exchanged_tokens=reader.count(
            "max_exchanged_tokens",
            DEFAULT_MAX_EXCHANGED_TOKENS,
            minimum=1,
            maximum=MAX_EXCHANGED_TOKENS,
        ),
        phantom=phantom,
        retry_on_401=reader.flag("retry_on_401", True),
        path_prefix=_path_prefix(reader),
        header=_header(reader),
        # RFC 9449 §7.1: a DPoP token goes as `Authorization: DPoP <token>`, with its proof.
        header_format=DPOP_HEADER_FORMAT if grant.credentials.dpop else _header_format(reader),
        allow_plain_http=reader.flag("allow_plain_http", False),
        certificate_bound=_certificate_bound(reader, grant),
    )


def _certificate_bound(reader: TableReader, grant: TokenGrant) -> bool:
    bound = reader.flag("certificate_bound", False)
    if bound and grant.credentials.transport.client_cert is None:
        raise reader.error(
            "certificate_bound",
            "needs auth_method tls_client_auth or self_signed_tls_client_auth: the token is "
            "bound to the client certificate of the token call",
        )
    return bound


def _subject_header(reader: TableReader) -> str:
    """Where the caller's token comes: `Authorization: Bearer <token>` by default, else the
    whole value of the header named."""
    header = reader.string("subject_token_header", required=False) or DEFAULT_HEADER
    if not _HEADER_NAME.match(header) or header.lower() in ("host", "content-length"):
        raise reader.error("subject_token_header", f"{header!r} is not a request header name")
    return header


def _token_type(reader: TableReader, key: str, default: str | None) -> str | None:
    """An RFC 8693 §3 token type: its URI, or its short name (`access_token`, `jwt`, ...)."""
    value = reader.string(key, required=False) or default
    if value is None or value.startswith(TOKEN_TYPE_PREFIX) or ":" in value:
        return value  # a URI: RFC 8693 lets a server define its own
    if value not in TOKEN_TYPES:
        names = ", ".join(TOKEN_TYPES)
        raise reader.error(key, f"{value!r} is neither a token type URI nor one of {names}")
    return TOKEN_TYPE_PREFIX + value


def _exchange(reader: TableReader) -> Exchange:
    if reader.flag("dpop", False):
        raise reader.error(
            "dpop",
            'not with grant = "token_exchange": a token exchanged for each caller is not bound '
            "to a key of the proxy's",
        )
    actor_file = reader.file("actor_token_file") if reader.has("actor_token_file") else None
    actor_type = _token_type(reader, "actor_token_type", None)
    if (actor_file is None) != (actor_type is None):
        missing = "actor_token_type" if actor_type is None else "actor_token_file"
        raise reader.error(missing, "give actor_token_file and actor_token_type together")
    return Exchange(
        subject_token_type=_token_type(reader, "subject_token_type", ACCESS_TOKEN_TYPE)
        or ACCESS_TOKEN_TYPE,
        requested_token_type=_token_type(reader, "requested_token_type", None),
        actor_token_file=str(actor_file) if actor_file else None,
        actor_token_type=actor_type,
    )


def _credentials(reader: TableReader) -> ClientCredentials:
    grant = GrantType(reader.choice("grant", tuple(GrantType), "client_credentials"))
    exchanging = grant is GrantType.TOKEN_EXCHANGE
    reader.refuse_unless(exchanging, EXCHANGE_KEYS, 'only for grant = "token_exchange"')
    is_bearer = grant is GrantType.JWT_BEARER
    reader.refuse_unless(
        grant is GrantType.REFRESH_TOKEN, REFRESH_KEYS, 'only for grant = "refresh_token"'
    )
    reader.refuse_unless(grant is GrantType.PASSWORD, PASSWORD_KEYS, 'only for grant = "password"')
    user = _user(reader, grant)
    if user and reader.flag("dpop", False) and not reader.has("dpop_key_file"):
        # A server binds the refresh token to the key too: one made by a process is lost with it.
        raise reader.error(
            "dpop",
            "with a user's refresh token, give dpop_key_file: a key each proxy makes for "
            "itself cannot use a refresh token bound to another's, or to its own before a restart",
        )
    default_method = "none" if is_bearer else "client_secret_basic"
    method = AuthMethod(reader.choice("auth_method", tuple(AuthMethod), default_method))
    if method is AuthMethod.NONE and not (is_bearer or user):
        raise reader.error(
            "auth_method",
            "'none' is only for grant = \"jwt_bearer\", and for a public client's "
            '"refresh_token" or "password"',
        )
    if method is AuthMethod.PRIVATE_KEY_JWT and is_bearer:
        raise reader.error(
            "auth_method", 'with grant = "jwt_bearer", private_key_file signs the grant itself'
        )
    reader.refuse_unless(is_bearer, BEARER_KEYS, 'only for grant = "jwt_bearer"')
    account = _service_account(reader) if is_bearer else None
    neither = not reader.has("token_url") and not reader.has("issuer")
    if reader.has("token_url") == reader.has("issuer") and not (account and neither):
        raise reader.error("token_url", "give exactly one of token_url and issuer")
    token_url = reader.url("token_url") if reader.has("token_url") else None
    issuer = reader.url("issuer") if reader.has("issuer") else None
    if account is not None and neither:
        token_url = account.token_uri  # as Google's client libraries do
    secret = reader.secret(SECRET_KEYS)[0] if method.uses_secret else None
    reader.refuse_unless(method.uses_secret, SECRET_KEYS, f"not used by auth_method {method}")
    is_basic = method is AuthMethod.CLIENT_SECRET_BASIC
    reader.refuse_unless(is_basic, ("basic_encoding",), "only for client_secret_basic")
    is_jwt = method in (AuthMethod.PRIVATE_KEY_JWT, AuthMethod.CLIENT_SECRET_JWT)
    reader.refuse_unless(is_jwt or is_bearer, ("assertion_audience",), "only for JWT assertions")
    audience = AssertionAudience.TOKEN_ENDPOINT
    if is_jwt and not is_bearer:
        audience = AssertionAudience(
            reader.choice("assertion_audience", tuple(AssertionAudience), "token_endpoint")
        )
        if audience is AssertionAudience.ISSUER and issuer is None:
            raise reader.error("assertion_audience", "'issuer' needs the issuer key (discovery)")
    # jwt_bearer without client authentication: the assertion names who asks.
    client_id = _client_id(reader, required=method is not AuthMethod.NONE or user is not None)
    bearer = _bearer(reader, account, client_id, issuer) if is_bearer else None
    return ClientCredentials(
        client_id=client_id or (account.client_email if account else ""),
        token_url=token_url,
        issuer=issuer,
        auth_method=method,
        client_secret=secret,
        basic_encoding=BasicEncoding(reader.choice("basic_encoding", tuple(BasicEncoding), "form")),
        signing_key=None if is_bearer else _signing_key(reader, method),
        assertion_file=_assertion_file(reader, method),
        assertion_audience=audience,
        scopes=_scopes(reader),
        audience=reader.string("audience", required=False) or None,
        resources=_resources(reader),
        extra_params=_extra_params(reader),
        token_headers=_token_headers(reader),
        transport=_transport(reader, method),
        grant=grant,
        bearer=bearer,
        exchange=_exchange(reader) if exchanging else None,
        dpop=None if exchanging else _dpop_key(reader),
        user=user,
    )


def _user(reader: TableReader, grant: GrantType) -> UserGrant | None:
    """refresh_token: the user's refresh token (its file or environment variable); password:
    the user's name and password (RFC 6749 §4.3)."""
    if grant is GrantType.REFRESH_TOKEN:
        return UserGrant(refresh_token=reader.secret(REFRESH_KEYS)[0])
    if grant is not GrantType.PASSWORD:
        return None
    username = reader.string("username")
    return UserGrant(
        username=username, password=reader.secret(("password_env", "password_file"))[0]
    )


def _client_id(reader: TableReader, *, required: bool) -> str:
    """client_id, or client_id_env: the environment variable that holds it (as a platform's
    secret store injects both the id and the secret)."""
    if not reader.has("client_id_env"):
        return reader.string("client_id", required=required)
    if reader.has("client_id"):
        raise reader.error("client_id_env", "give client_id or client_id_env, not both")
    name = reader.string("client_id_env")
    client_id = reader.environ.get(name, "").strip()
    if not client_id:
        raise reader.error("client_id_env", f"environment variable {name} is not set or empty")
    return client_id


def _dpop_key(reader: TableReader) -> DpopKey | None:
    """dpop = true: the key of dpop_key_file, or the one this process made for the backend."""
    dpop = reader.flag("dpop", False)
    reader.refuse_unless(dpop, ("dpop_key_file",), "only with dpop = true")
    if not dpop:
        return None
    for key in ("header", "header_format"):
        if reader.has(key):
            raise reader.error(key, "a DPoP token goes in Authorization: DPoP <token>")
    if not reader.has("dpop_key_file"):
        return process_dpop_key(reader.string("name"))
    path = reader.file("dpop_key_file")
    try:
        return load_dpop_key(path.read_bytes())
    except (ValueError, TypeError) as e:
        raise reader.error(
            "dpop_key_file", f"{path}: not an unencrypted PEM EC P-256 or RSA key ({reason(e)})"
        ) from e


@dataclass(frozen=True)
class _ServiceAccount:
    client_email: str
    key: SigningKey
    token_uri: str


def _service_account(reader: TableReader) -> _ServiceAccount | None:
    """Google's service-account key file (JSON), as `gcloud iam service-accounts keys create`
    writes it. The assertion is built from it as Google documents: iss = client_email, kid =
    private_key_id, aud = token_uri, the scope as a claim, one hour."""
    key = "service_account_file"
    if not reader.has(key):
        return None
    path = reader.file(key)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise reader.error(key, f"{path} is not JSON (a service-account key file)") from e
    kind = document.get("type") if isinstance(document, dict) else None
    if kind != "service_account":
        what = f"a {kind!r} credentials file" if isinstance(kind, str) else "no credentials file"
        raise reader.error(key, f"{path} is {what}, not a service-account key")
    fields = {}
    for name in ("client_email", "private_key", "private_key_id", "token_uri"):
        value = document.get(name)
        if not isinstance(value, str) or not value.strip():
            raise reader.error(key, f"{path} has no '{name}'")
        fields[name] = value
    try:
        private = serialization.load_pem_private_key(fields["private_key"].encode(), password=None)
    except (ValueError, TypeError) as e:
        raise reader.error(key, f"{path}: its private_key is not a PEM private key") from e
    if not isinstance(private, rsa.RSAPrivateKey):
        raise reader.error(key, f"{path}: its private_key is not RSA (it must sign RS256)")
    token_uri = fields["token_uri"]
    parts = urlsplit(token_uri)
    loopback = parts.scheme == "http" and is_loopback(parts.hostname or "")
    if parts.scheme != "https" and not loopback:
        raise reader.error(key, f"{path}: its token_uri must be an https URL")
    signing = SigningKey(str(path), Secret(_pkcs8(private)), "RS256", fields["private_key_id"])
    return _ServiceAccount(fields["client_email"], signing, token_uri)


def _bearer(
    reader: TableReader, account: _ServiceAccount | None, client_id: str, issuer: str | None
) -> BearerAssertion:
    """jwt_bearer: the service account's assertion, or one from private_key_file and the
    assertion_* keys (Salesforce's and Okta's service-app flows)."""
    if account is not None:
        for name in ("private_key_file", "signing_alg", "key_id", "assertion_issuer"):
            if reader.has(name):
                raise reader.error(name, "service_account_file gives it")
        if reader.has("assertion_audience"):
            raise reader.error("assertion_audience", "service_account_file gives it (token_uri)")
        subject = reader.string("assertion_subject", required=False) or None  # delegation
        return BearerAssertion(
            account.key, account.client_email, subject, account.token_uri, 3600, scope_claim=True
        )
    if not reader.has("private_key_file"):
        raise reader.error("private_key_file", "missing (or give service_account_file)")
    key = _key_file(reader)
    issued_by = reader.string("assertion_issuer", required=not client_id) or client_id
    subject = reader.string("assertion_subject", required=False) or issued_by
    audience = reader.string("assertion_audience", required=False) or None
    if audience == AssertionAudience.ISSUER and issuer is None:
        raise reader.error("assertion_audience", "'issuer' needs the issuer key (discovery)")
    return BearerAssertion(key, issued_by, subject, audience, ASSERTION_LIFETIME)


def _signing_key(reader: TableReader, method: AuthMethod) -> SigningKey | None:
    keys = ("private_key_file", "signing_alg", "key_id")
    reader.refuse_unless(method is AuthMethod.PRIVATE_KEY_JWT, keys, "only for private_key_jwt")
    if method is not AuthMethod.PRIVATE_KEY_JWT:
        return None
    return _key_file(reader)


def _key_file(reader: TableReader) -> SigningKey:
    """private_key_file, with signing_alg and key_id."""
    path = reader.file("private_key_file")
    pem = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise reader.error(
            "private_key_file", f"{path} is not an unencrypted PEM private key ({reason(e)})"
        ) from e
    default = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    algorithm = reader.choice("signing_alg", tuple(_ALGORITHMS), default)
    if not isinstance(key, _ALGORITHMS[algorithm]):
        raise reader.error("signing_alg", f"{algorithm} does not fit the key in {path}")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name != "secp256r1":
        raise reader.error("private_key_file", "ES256 needs a P-256 key")
    key_id = reader.string("key_id", required=False) or None
    return SigningKey(str(path), Secret(_pkcs8(key)), algorithm, key_id)


def _pkcs8(key: PrivateKeyTypes) -> str:
    # Re-serialised: the file may carry text around the PEM block (openssl "Bag Attributes").
    clean = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return clean.decode("ascii")


def _assertion_file(reader: TableReader, method: AuthMethod) -> str | None:
    """client_assertion: the platform's file, checked once here (read, a signed JWT) so that a
    wrong path or file is told at startup. Not followed like the other files: it is read for
    each token request anyway, and its rotation changes nothing in the configuration."""
    key = "client_assertion_file"
    reader.refuse_unless(method is AuthMethod.CLIENT_ASSERTION, (key,), "only for client_assertion")
    if method is not AuthMethod.CLIENT_ASSERTION:
        return None
    path = reader.resolve(key)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise reader.error(key, f"cannot read {path} ({reason(e)})") from e
    try:
        check_assertion(text, now=None)  # expired now is fine: the platform may renew it first
    except AssertionProblem as e:
        raise reader.error(key, f"{path} {e}") from None
    return str(path)


def _transport(reader: TableReader, method: AuthMethod) -> TokenTransport:
    is_mtls = method.uses_certificate
    reader.refuse_unless(
        is_mtls,
        ("client_cert_file", "client_key_file"),
        "only for tls_client_auth or self_signed_tls_client_auth",
    )
    identity = None
    if is_mtls:
        cert, key = reader.file("client_cert_file"), reader.file("client_key_file")
        identity = TlsIdentity(str(cert), str(key), _digest(cert, key))
        try:
            ssl.create_default_context().load_cert_chain(identity.cert_file, identity.key_file)
        except (ssl.SSLError, OSError) as e:
            raise reader.error(
                "client_cert_file", f"no usable PEM certificate and key ({reason(e)})"
            ) from e
    ca_bundle = str(reader.file("token_ca_bundle")) if reader.has("token_ca_bundle") else None
    if ca_bundle is not None:
        try:
            ssl.create_default_context(cafile=ca_bundle)
        except (ssl.SSLError, OSError) as e:
            raise reader.error(
                "token_ca_bundle", f"{ca_bundle} has no PEM certificates ({reason(e)})"
            ) from e
    return TokenTransport(
        timeout=reader.seconds("token_timeout", 10.0, minimum=0.1),
        ca_bundle=ca_bundle,
        ca_digest=_digest(Path(ca_bundle)) if ca_bundle else "",
        proxy=reader.url("token_proxy", schemes=("http", "https"))
        if reader.has("token_proxy")
        else None,
        client_cert=identity,
    )


def _digest(*files: Path) -> str:
    return hashlib.sha256(b"".join(file.read_bytes() for file in files)).hexdigest()


def _scopes(reader: TableReader) -> tuple[str, ...]:
    raw = reader.strings("scope")
    scopes: list[str] = []
    for scope in (token for item in raw for token in item.split()):
        if not _SCOPE_TOKEN.match(scope):
            raise reader.error("scope", f"{scope!r} is not a valid scope token (RFC 6749 §3.3)")
        if scope not in scopes:
            scopes.append(scope)
    return tuple(scopes)


def _resources(reader: TableReader) -> tuple[str, ...]:
    resources = reader.strings("resource")
    for resource in resources:
        try:
            parts = urlsplit(resource)
        except ValueError as e:  # "Invalid IPv6 URL"
            raise reader.error("resource", f"{resource!r} is not a valid URI ({e})") from e
        # RFC 8707 §2: an absolute URI without a fragment.
        if not parts.scheme or not (parts.netloc or parts.path) or parts.fragment:
            raise reader.error("resource", f"{resource!r} is not an absolute URI without #fragment")
    return resources


def _extra_params(reader: TableReader) -> tuple[tuple[str, str], ...]:
    params = reader.string_table("extra_params")
    for name, _ in params:
        if name in _RESERVED_PARAMS:
            raise reader.error("extra_params", f"'{name}' is set by the grant itself")
    return params


def _token_headers(reader: TableReader) -> tuple[tuple[str, str], ...]:
    headers = reader.string_table("token_headers")
    for name, value in headers:
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise reader.error("token_headers", f"'{name}' cannot be set")
        if not (value.isascii() and value.isprintable()):
            raise reader.error("token_headers", f"the value of '{name}' must be printable ASCII")
    return headers


def _hosts(reader: TableReader) -> tuple[HostPattern, ...]:
    value = reader.table.get("hosts")
    if value is None:
        raise reader.error("hosts", "missing")
    if not isinstance(value, list) or not value:
        raise reader.error("hosts", 'must be a non-empty list of "host" or "host:port" strings')
    patterns: list[HostPattern] = []
    for entry in reader.strings("hosts"):
        try:
            pattern = parse_host_pattern(entry)
        except ValueError as e:
            raise reader.error("hosts", str(e)) from e
        if pattern in patterns:
            raise reader.error("hosts", f"{pattern} is listed twice")
        patterns.append(pattern)
    return tuple(patterns)


def _path_prefix(reader: TableReader) -> str:
    prefix = reader.string("path_prefix", required=False) or "/"
    if not prefix.startswith("/") or "?" in prefix or "#" in prefix:
        raise reader.error("path_prefix", "must start with '/' and have no query or fragment")
    return prefix


def _header(reader: TableReader) -> str:
    header = reader.string("header", required=False) or DEFAULT_HEADER
    if not _HEADER_NAME.match(header) or header.lower() in ("host", "content-length"):
        raise reader.error("header", f"{header!r} is not a header name we may set")
    return header


def _header_format(reader: TableReader) -> str:
    template = reader.string("header_format", required=False) or DEFAULT_HEADER_FORMAT
    rest = template.replace("{token}", "", 1)
    if "{token}" not in template or "{" in rest or "}" in rest:
        raise reader.error("header_format", "must contain {token} once and no other braces")
    if not template.isprintable():
        raise reader.error("header_format", "must be printable, without line breaks")
    return template


__all__ = ["BackendConfig", "ConfigError", "parse_backend"]
