"""Both dev servers in one process: the token server (with the admin API) and the backend."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping

from .backend import BackendHandler
from .clients import Client
from .httpd import Server
from .state import State
from .token_endpoint import TOKEN_PATH
from .token_endpoint import TokenHandler


def _server_context(cert: str, key: str | None, client_ca: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL  # asked for, verified if sent, not required
    return context


class DevServers:
    """Both servers in this process; ``start()`` binds and serves from daemon threads.

    ``tls_cert``/``tls_key`` serve the backend over HTTPS; ``token_tls_cert``/``token_tls_key``
    the token server (token endpoint, metadata, admin API), which with ``token_client_ca`` also
    asks for client certificates issued by that CA (tls_client_auth); ``backend_client_ca``
    has the backend ask for them (certificate-bound tokens).
    """

    def __init__(
        self,
        clients: Mapping[str, str | Client] | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token_port: int = 0,
        backend_port: int = 0,
        *,
        token_tls_cert: str | None = None,
        token_tls_key: str | None = None,
        token_client_ca: str | None = None,
        backend_client_ca: str | None = None,
    ) -> None:
        if token_client_ca and not token_tls_cert:
            raise ValueError("a client CA needs the token server on TLS (token_tls_cert)")
        self.state = State(clients)
        self._ports = (token_port, backend_port)
        if backend_client_ca and not tls_cert:
            raise ValueError("a backend client CA needs the backend on TLS (tls_cert)")
        self._tls = None
        if tls_cert or tls_key:
            self._tls = _server_context(tls_cert or "", tls_key, backend_client_ca)
        self._token_tls = None
        if token_tls_cert or token_tls_key:
            self._token_tls = _server_context(token_tls_cert or "", token_tls_key, token_client_ca)
        self._servers: list[Server] = []
        self._threads: list[threading.Thread] = []
        self.token_url = self.backend_url = self.admin_url = self.issuer = ""

    def start(self) -> DevServers:
        # The stdlib http.server keeps the demo free of extra dependencies.
        token = Server(self._ports[0], TokenHandler, self.state, self._token_tls)
        backend = Server(self._ports[1], BackendHandler, self.state, self._tls)
        self._servers = [token, backend]
        for server in self._servers:
            self._threads.append(threading.Thread(target=server.serve_forever, args=(0.1,)))
            self._threads[-1].daemon = True
            self._threads[-1].start()
        self.issuer = token.base_url  # RFC 8414 issuer identifier: no path, no trailing slash
        self.token_url = token.base_url + TOKEN_PATH
        self.admin_url = token.base_url + "/_admin"
        self.backend_url = backend.base_url
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> DevServers:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
