"""Local OAuth2 authorization server and protected backend, for the demo and the tests.

``python -m mitm_oauth2.devservers [--clients JSON] [--tls-cert PEM --tls-key PEM]
[--token-port N] [--backend-port N]`` binds 127.0.0.1 only, prints one JSON line with
``token_url``, ``backend_url`` and ``admin_url`` and serves until SIGTERM/SIGINT.
Admin API on the token server: ``POST /_admin/config`` (JSON object; only the given knobs
change, see ``KNOBS``), ``POST /_admin/reset``, ``POST /_admin/revoke``, ``GET /_admin/stats``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from socketserver import TCPServer
from types import NoneType
from typing import Any

HOST = "127.0.0.1"
JSON = "application/json"
DEFAULT_CLIENTS: dict[str, str] = {"demo-client": "demo secret with : % + & chars"}
# name: (default, accepted types). None omits expires_in (the token then never expires) or
# token_type. status and/or body replace every token response (defaults: 200, server_error).
KNOBS: dict[str, tuple[Any, tuple[type, ...]]] = {
    "expires_in": (3600, (int, NoneType)),
    "token_type": ("Bearer", (str, NoneType)),
    "delay": (0, (int, float)),  # seconds to sleep before answering a token request
    "status": (None, (int, NoneType)),
    "body": (None, (str, NoneType)),
    "content_type": (None, (str, NoneType)),
    "retry_after": (None, (int, str, NoneType)),
    "down": (False, (bool,)),  # close token connections without answering
    # backend_status forces every backend answer (e.g. 401 or 403, token or not), with
    # backend_challenge as its WWW-Authenticate header when set.
    "backend_status": (None, (int, NoneType)),
    "backend_challenge": (None, (str, NoneType)),
}
Reply = tuple[int, dict[str, Any], dict[str, str]]


def token_id(token: str) -> str:
    """Short, non-secret identifier of a token, as echoed by the backend."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class State:
    """Everything both servers share; every access holds the lock."""

    def __init__(self, clients: dict[str, str] | None = None) -> None:
        self.clients = dict(DEFAULT_CLIENTS if clients is None else clients)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._knobs = {name: default for name, (default, _) in KNOBS.items()}
            self._tokens: dict[str, float | None] = {}  # token -> monotonic expiry
            self._logs: dict[str, list[dict[str, Any]]] = {"token": [], "backend": []}
            self._arrived = 0  # token requests received, answered or not (the log waits)

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if key not in KNOBS:
                raise ValueError(f"unknown knob {key!r}")
            types = KNOBS[key][1]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ValueError(f"bad value for {key!r}: {value!r}")
        with self._lock:  # configure({}) just reads the knobs
            self._knobs.update(changes)
            return dict(self._knobs)

    def check_client(self, client_id: str, secret: str) -> bool:
        expected = self.clients.get(client_id)
        return expected is not None and secrets.compare_digest(expected.encode(), secret.encode())

    def issue(self, expires_in: int | None) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = None if expires_in is None else time.monotonic() + expires_in
        return token

    def token_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token, float("-inf"))
        return expiry is None or time.monotonic() < expiry

    def revoke(self) -> None:
        with self._lock:
            self._tokens.clear()

    def arrive(self) -> None:
        with self._lock:
            self._arrived += 1

    def record(self, log: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._logs[log].append(entry)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            logs, arrived = copy.deepcopy(self._logs), self._arrived
        return {
            "token_requests": len(logs["token"]),
            "token_requests_arrived": arrived,
            "token_request_log": logs["token"],
            "backend_requests": logs["backend"],
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not block stop()
    request_queue_size = 1024  # crowds of 200 connect at once; the default backlog of 5 drops SYNs

    def __init__(
        self, port: int, handler: type[_Handler], state: State, tls: ssl.SSLContext | None
    ):
        self.state = state
        super().__init__((HOST, port), handler)
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: _Server

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


def _error(status: int, code: str, description: str) -> Reply:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="devserver"'
    return status, {"error": code, "error_description": description}, headers


def _decode_basic(value: str) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: base64, split on the first ':', then form-urldecode each part."""
    scheme, _, encoded = value.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError
        return None
    user, sep, password = decoded.partition(":")
    if scheme.lower() != "basic" or not sep:
        return None
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


class _TokenHandler(_Handler):
    def do_GET(self) -> None:
        self._read_body()
        if urllib.parse.urlsplit(self.path).path == "/_admin/stats":
            self._send(200, self.server.state.stats(), {})
        else:
            self._send(404, {"error": "not_found"}, {})

    def do_POST(self) -> None:
        raw, path = self._read_body(), urllib.parse.urlsplit(self.path).path
        state = self.server.state
        if raw is None:
            self._send(*_error(400, "invalid_request", "unreadable body"))
        elif path == "/token":
            self._token(raw)
        elif path == "/_admin/config":
            try:
                changes = json.loads(raw or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                self._send(200, state.configure(changes), {})
            except ValueError as e:
                self._send(400, {"error": str(e)}, {})
        elif path in ("/_admin/reset", "/_admin/revoke"):
            (state.reset if path == "/_admin/reset" else state.revoke)()
            self._send(200, {"ok": True}, {})
        else:
            self._send(404, {"error": "not_found"}, {})

    def _token(self, raw: bytes) -> None:
        state, knobs = self.server.state, self.server.state.configure({})
        state.arrive()
        entry: dict[str, Any] = {"time": time.time(), "auth": None, "client_id": None}
        status, fields, headers = self._authorize(raw, entry)
        time.sleep(knobs["delay"])
        body: object = fields
        if knobs["down"]:
            status, self.close_connection = 0, True  # close without answering
        elif knobs["status"] is not None or knobs["body"] is not None:
            status = 200 if knobs["status"] is None else knobs["status"]
            body = {"error": "server_error"} if knobs["body"] is None else knobs["body"].encode()
            headers = {"Cache-Control": "no-store"}
        elif status == 200:
            token = state.issue(knobs["expires_in"])
            issued = {"access_token": token, "token_type": knobs["token_type"]}
            fields = {**issued, "expires_in": knobs["expires_in"], **fields}
            body = {k: v for k, v in fields.items() if v is not None}
            entry["token_id"] = token_id(token)
        if knobs["retry_after"] is not None:
            headers["Retry-After"] = str(knobs["retry_after"])
        entry["status"] = status or None
        state.record("token", entry)  # before answering: stats are current for the client
        if status:
            self._send(status, body, headers, knobs["content_type"] or JSON)

    def _authorize(self, raw: bytes, entry: dict[str, Any]) -> Reply:
        try:
            pairs = urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return _error(400, "invalid_request", "body is not a valid form")
        form = dict(pairs)
        entry.update(form_keys=sorted(form), grant_type=form.get("grant_type"))
        entry["scope"] = form.get("scope")
        auth_headers = self.headers.get_all("Authorization") or []
        if len(form) != len(pairs) or len(auth_headers) > 1:
            return _error(400, "invalid_request", "repeated parameter or header")
        if auth_headers:
            entry["auth"] = auth_headers[0].partition(" ")[0].lower()  # "basic", normally
            if "client_secret" in form:
                return _error(400, "invalid_request", "more than one client authentication")
            creds = _decode_basic(auth_headers[0])
            if creds is None:
                return _error(401, "invalid_client", "malformed Basic credentials")
            if form.get("client_id", creds[0]) != creds[0]:
                return _error(400, "invalid_request", "client_id differs from Basic credentials")
        elif "client_secret" in form:
            entry["auth"] = "post"
            creds = (form.get("client_id", ""), form["client_secret"])
        else:
            return _error(401, "invalid_client", "no client authentication")
        entry["client_id"] = creds[0]
        if not self.server.state.check_client(*creds):
            return _error(401, "invalid_client", "unknown client or wrong secret")
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "only client_credentials is supported")
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        return 200, {"scope": form.get("scope")}, headers


class _BackendHandler(_Handler):
    def _handle(self) -> None:
        raw = self._read_body()
        if raw is None:
            self._send(400, {"ok": False, "error": "unreadable body"}, {})
            return
        state, text = self.server.state, raw.decode("utf-8", "replace")
        values = self.headers.get_all("Authorization") or []
        scheme, _, token = values[0].partition(" ") if len(values) == 1 else ("", "", "")
        ok = scheme.lower() == "bearer" and bool(token) and state.token_valid(token)
        echo = {"method": self.command, "path": self.path, "body": text}
        host = self.headers.get("Host")
        knobs = state.configure({})
        forced, challenge = knobs["backend_status"], knobs["backend_challenge"]
        ok = ok and forced is None
        state.record("backend", {**echo, "authorization": values, "host": host, "ok": ok})
        if forced is not None:
            headers = {"WWW-Authenticate": challenge} if challenge else {}
            self._send(forced, {"ok": False, **echo, "error": "forced"}, headers)
        elif ok:
            self._send(200, {"ok": True, **echo, "token_id": token_id(token)}, {})
        elif not values:
            self._send(401, {"ok": False, "error": "no token"}, {"WWW-Authenticate": "Bearer"})
        else:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            self._send(401, {"ok": False, "error": "invalid_token"}, challenge)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


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
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.token_url = self.backend_url = self.admin_url = ""

    def start(self) -> DevServers:
        # The stdlib http.server keeps the demo free of extra dependencies.
        token = _Server(self._ports[0], _TokenHandler, self.state, None)
        backend = _Server(self._ports[1], _BackendHandler, self.state, self._tls)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mitm_oauth2.devservers", description=__doc__)
    parser.add_argument("--clients", help='JSON object {"client_id": "secret", ...}')
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve the backend over HTTPS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--token-port", type=int, default=0)
    parser.add_argument("--backend-port", type=int, default=0)
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        clients = None if args.clients is None else json.loads(args.clients)
    except ValueError as e:
        parser.error(f"--clients: {e}")
    if clients is not None and not (
        isinstance(clients, dict) and all(isinstance(v, str) for v in clients.values())
    ):
        parser.error("--clients must be a JSON object of strings")

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        servers = DevServers(
            clients, args.tls_cert, args.tls_key, args.token_port, args.backend_port
        )
        servers.start()
    except OSError as e:  # includes ssl.SSLError: unusable certificate or key, port in use
        print(f"devservers: cannot start: {e}", file=sys.stderr)
        return 1
    urls = {"token_url": servers.token_url, "backend_url": servers.backend_url}
    print(json.dumps({**urls, "admin_url": servers.admin_url}), flush=True)
    while not stop.wait(1.0):
        pass
    servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
