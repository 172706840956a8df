"""The HTTP plumbing both dev servers use: a threading server on 127.0.0.1 (TLS optional, client
certificates optional) and a handler base that reads request bodies and sends JSON answers."""

from __future__ import annotations

import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

from .state import State

HOST = "127.0.0.1"
JSON = "application/json"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not block stop()
    request_queue_size = 1024  # crowds of 200 connect at once; the default backlog of 5 drops SYNs

    def __init__(self, port: int, handler: type[Handler], state: State, tls: ssl.SSLContext | None):
        self.state = state
        super().__init__((HOST, port), handler)
        self.base_url = f"{'https' if tls else 'http'}://{HOST}:{self.server_port}"
        # A client certificate is asked for (and verified) but optional: callers without one
        # (the admin API, other auth methods) still get through.
        self.verifies_clients = tls is not None and tls.verify_mode != ssl.CERT_NONE
        if tls is not None:  # the handshake happens on first read, in the connection's thread
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def server_bind(self) -> None:  # skips HTTPServer's getfqdn(): no reverse DNS lookup
        TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError):  # e.g. the client rejected our certificate
            print(f"devservers: TLS error from {client_address}: {exc}", file=sys.stderr)
        elif not isinstance(exc, ConnectionError | TimeoutError):
            super().handle_error(request, client_address)  # traceback to stderr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the client's
    # delayed ACK (40 ms on Linux) on every answer.
    disable_nagle_algorithm = True
    timeout = 60
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no per-request logging: stdout carries only the JSON line

    def _read_body(self) -> bytes | None:
        """The body (Content-Length or chunked); None, closing the connection, if malformed."""
        try:
            if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                length = int(self.headers.get("Content-Length", "0"))
                if length < 0:
                    raise ValueError("negative Content-Length")
                return self.rfile.read(length)
            chunks: list[bytes] = []
            while (size := int(self.rfile.readline(1024).split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
            if size < 0:
                raise ValueError("negative chunk size")
            while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
            return b"".join(chunks)
        except ValueError:
            self.close_connection = True
            return None

    def _send(self, status: int, body: object, headers: dict[str, str], ctype: str = JSON) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
