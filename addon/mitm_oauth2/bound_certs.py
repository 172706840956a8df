"""Certificate-bound tokens (RFC 8705 §3): a backend whose token is bound to the client
certificate of its token call gets that certificate on the proxy's TLS connections to its
hosts too, so that a server checking the token's `cnf` (`x5t#S256`) finds the certificate it
names. Only those backends' connections get it.

mitmproxy's TlsConfig builds each upstream TLS connection (verification, SNI, ALPN, ciphers)
and leaves alone one an addon has built; script addons run before it. So `present` has
TlsConfig build the connection as it would, then puts the certificate on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from mitmproxy import connection
from mitmproxy import ctx
from mitmproxy import tls

from .config.backend import BackendConfig
from .config.hosts import HostPattern
from .config.hosts import HostRouter
from .model.credentials import TlsIdentity


@dataclass(frozen=True)
class _Loaded:
    certificate: x509.Certificate
    key: PrivateKeyTypes


class BoundCertificates:
    """Which client certificate to present to which server; files read once per configuration.
    Raises ValueError when two certificate-bound backends on one host name other certificates:
    a connection can carry one."""

    def __init__(self, backends: tuple[BackendConfig, ...] = ()) -> None:
        entries: dict[HostPattern, tuple[str, TlsIdentity]] = {}
        for backend in backends:
            identity = backend.grant.credentials.transport.client_cert
            if not backend.certificate_bound or identity is None:
                continue
            for pattern in backend.hosts:
                seen = entries.setdefault(pattern, (backend.name, identity))
                if seen[1] != identity:
                    raise ValueError(
                        f"backends '{seen[0]}' and '{backend.name}' are certificate_bound on "
                        f"{pattern} with other client certificates; a connection carries one"
                    )
        self._router: HostRouter[TlsIdentity] = HostRouter(
            (pattern, "/", identity) for pattern, (_, identity) in entries.items()
        )
        self._loaded = {identity: _load(identity) for _, identity in entries.values()}

    def __bool__(self) -> bool:
        return bool(self._loaded)

    def present(self, tls_start: tls.TlsData) -> bool:
        """Puts the certificate on this upstream connection if its server is a certificate-bound
        backend's; whether it did."""
        server = tls_start.conn  # the TLS peer itself: an upstream proxy's gets no certificate
        if tls_start.ssl_conn is not None or not isinstance(server, connection.Server):
            return False
        if not server.address:
            return False
        identity = self._router.match(server.sni or server.address[0], server.address[1], "https")
        if identity is None:
            return False
        tlsconfig = ctx.master.addons.get("tlsconfig")  # type: ignore[no-untyped-call]
        if tlsconfig is None:  # a master without mitmproxy's TLS addon builds its own
            return False
        tlsconfig.tls_start_server(tls_start)
        if tls_start.ssl_conn is None:
            return False
        loaded = self._loaded[identity]
        tls_start.ssl_conn.use_certificate(loaded.certificate)
        tls_start.ssl_conn.use_privatekey(loaded.key)
        return True


def _load(identity: TlsIdentity) -> _Loaded:
    """The leaf certificate and its key (a chain's intermediates are not sent)."""
    with open(identity.cert_file, "rb") as file:
        certificate = x509.load_pem_x509_certificate(file.read())
    with open(identity.key_file, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), password=None)
    return _Loaded(certificate, key)
