"""Both dev servers in one process: the token server (with the admin API) and the backend."""

from __future__ import annotations

import ssl
import threading

from .backend import BackendHandler
from .httpd import HOST
from .httpd import Server
from .state import State
from .token_endpoint import TokenHandler


class DevServers:
    """Both servers in this process; ``start()`` binds and serves from daemon threads."""

    def __init__(
        self,
        clients: dict[str, str] | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token_port: int = 0,
        backend_port: int = 0,
    ) -> None:
        self.state = State(clients)
        self._ports = (token_port, backend_port)
        self._tls: ssl.SSLContext | None = None
        if tls_cert or tls_key:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(tls_cert or "", tls_key)
            self._tls.set_alpn_protocols(["http/1.1"])
        self._servers: list[Server] = []
        self._threads: list[threading.Thread] = []
        self.token_url = self.backend_url = self.admin_url = ""

    def start(self) -> DevServers:
        # The stdlib http.server keeps the demo free of extra dependencies.
        token = Server(self._ports[0], TokenHandler, self.state, None)
        backend = Server(self._ports[1], BackendHandler, self.state, self._tls)
        self._servers = [token, backend]
        for server in self._servers:
            self._threads.append(threading.Thread(target=server.serve_forever, args=(0.1,)))
            self._threads[-1].daemon = True
            self._threads[-1].start()
        self.token_url = f"http://{HOST}:{token.server_port}/token"
        self.admin_url = f"http://{HOST}:{token.server_port}/_admin"
        self.backend_url = f"{'https' if self._tls else 'http'}://{HOST}:{backend.server_port}"
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
