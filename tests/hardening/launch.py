"""The processes and clients the hardening tables share: the dev servers and mitmdump (the
suites' own, from tests/support), started once per module, plus a raw client that sends exactly
the bytes a case needs (header case, several Host headers, odd request targets) and a recording
loopback server that plays the upstream proxy in front of host names that do not resolve."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory


class Launcher:
    """Starts dev servers and proxies for one module; `stop()` ends them all. Each is added to
    `report` (a failed test's report shows its output)."""

    def __init__(self, workdir: Path, tls: TlsFiles, confdir: Path, report: list[Any]) -> None:
        self.workdir, self.tls = workdir, tls
        self._report = report
        self._servers: list[DevServersProcess] = []
        self._proxies = ProxyFactory(
            workdir, confdir=confdir, upstream_ca=tls.ca_cert, report=report
        )

    def devservers(
        self, *, tls: bool = False, clients: dict[str, Any] | None = None
    ) -> DevServersProcess:
        servers = DevServersProcess(
            tls=self.tls if tls else None, clients=clients, cwd=self.workdir
        )
        self._servers.append(servers)
        self._report.append(servers)
        return servers

    def proxy(
        self,
        config: str,
        *extra_args: str,
        mode: str | None = None,
        cache: Path | None = None,
        config_path: Path | None = None,
    ) -> Proxy:
        """A mitmdump on `config` (written to `config_path` when given), with a token cache of
        its own unless `cache` is given; `extra_args` go to mitmdump."""
        return self._proxies(
            config, *extra_args, mode=mode, cache_dir=cache, config_path=config_path
        )

    def stop(self) -> None:
        self._proxies.stop()
        for servers in self._servers:
            servers.stop()


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1 response."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _read_all(sock: socket.socket | ssl.SSLSocket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw_request(proxy_port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `data` as it is to the proxy (plain HTTP, absolute-form targets); the request should
    say `Connection: close`, the answer is read until the proxy closes."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        sock.sendall(data)
        return parse_response(_read_all(sock))


def _tunnel(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A connection to the proxy on which CONNECT host:port was answered 200."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply and (chunk := sock.recv(4096)):
        reply += chunk
    if not reply.startswith(b"HTTP/1.1 200"):
        sock.close()
        raise AssertionError(f"CONNECT {host}:{port} was answered {reply!r}")
    return sock


def raw_tunnel_request(
    proxy: Proxy, host: str, port: int, data: bytes, *, sni: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """CONNECT host:port through the proxy, TLS with the proxy's CA (SNI `sni`, default `host`),
    then send `data` as it is; the answer is read until the connection closes."""
    context = proxy.ssl_context()
    with (
        _tunnel(proxy, host, port) as sock,
        context.wrap_socket(sock, server_hostname=sni or host) as tls,
    ):
        tls.sendall(data)
        return parse_response(_read_all(tls))


class RecordingServer(ThreadingHTTPServer):
    """A plain HTTP server on 127.0.0.1 that answers 200 and records what it received: the
    request target and every Host and Authorization header. As mitmproxy's upstream proxy it
    sees each forwarded request in absolute form, whatever host name it names."""

    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Recorder)
        self._thread = threading.Thread(target=self.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self) -> list[dict[str, Any]]:
        """What arrived since the last call."""
        with self._lock:
            taken, self.received = self.received, []
        return taken

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


class _Recorder(BaseHTTPRequestHandler):
    server: RecordingServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        entry = {
            "target": self.path,
            "host": self.headers.get_all("Host") or [],
            "authorization": self.headers.get_all("Authorization") or [],
        }
        with self.server._lock:
            self.server.received.append(entry)
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle


def raw_h2_request(
    proxy: Proxy, host: str, port: int, headers: list[tuple[str, str]]
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/2 request with exactly `headers` (pseudo-headers included, in order) through a
    CONNECT tunnel; a stream reset by the proxy is answered as status 0."""
    import h2.config
    import h2.connection
    import h2.events

    with _tunnel(proxy, host, port) as sock:
        context = proxy.ssl_context()
        context.set_alpn_protocols(["h2"])
        with context.wrap_socket(sock, server_hostname=host) as tls:
            assert tls.selected_alpn_protocol() == "h2"
            config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False)
            conn = h2.connection.H2Connection(config)
            conn.initiate_connection()
            conn.send_headers(1, headers, end_stream=True)
            tls.sendall(conn.data_to_send())
            status, answer, body = 0, {}, b""
            while data := tls.recv(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        answer = {k.decode(): v.decode() for k, v in event.headers}
                        status = int(answer[":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        return status, answer, body
                tls.sendall(conn.data_to_send())
            return status, answer, body
