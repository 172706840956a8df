"""A misbehaving token endpoint on 127.0.0.1: one listener per way of failing.

Our own fake on purpose: the devservers are a well-behaved HTTP server (http.server), which
can be slowed down, told to answer errors or to close before answering, but cannot reset a
connection (RST), stop in the middle of a response, speak something that is not HTTP, or
present a bad certificate. Those faults happen below HTTP, so they need a raw socket server.

Modes (each listener counts the connections it accepted):
  reset         reads the request, then closes with SO_LINGER 0: the client gets an RST
  mid-response  reads the request, sends half of a 200 token response, then closes
  garbage       reads the request, answers bytes that are not HTTP, then closes
  silent        accepts and never answers (the client's token_timeout must end it)
  tls:NAME      a TLS server with one of the certificates of `TlsFaults`; the handshake
                fails on the client's side, nothing is ever read or answered
  tls-only      a TLS server for clients that speak plain HTTP to it
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme

HALF_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    b'{"access_token": "never-comp'
)
NOT_HTTP = b"\x00\x01SSH-2.0-not-an-http-server\r\n\r\n"


@dataclass(frozen=True)
class TlsFaults:
    """Server certificates that a client trusting `trusted_ca` must refuse, by name."""

    trusted_ca: Path  # what the backend's token_ca_bundle names
    certs: dict[str, tuple[Path, Path]]  # name -> (chain PEM, key PEM)

    @classmethod
    def make(cls, directory: Path, trusted: trustme.CA, trusted_ca: Path) -> TlsFaults:
        now = datetime.datetime.now(datetime.UTC)
        leaves = {
            # issued by a CA the client does not trust
            "unknown-ca": trustme.CA().issue_cert("127.0.0.1", "localhost"),
            # trusted CA, but for another name than the one the client connects to
            "wrong-host": trusted.issue_cert("other.invalid"),
            # trusted CA and the right name, but expired yesterday
            "expired": trusted.issue_cert(
                "127.0.0.1",
                "localhost",
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            ),
        }
        certs: dict[str, tuple[Path, Path]] = {}
        for name, leaf in leaves.items():
            chain, key = directory / f"{name}-chain.pem", directory / f"{name}-key.pem"
            for i, blob in enumerate(leaf.cert_chain_pems):
                blob.write_to_path(str(chain), append=i > 0)
            leaf.private_key_pem.write_to_path(str(key))
            certs[name] = (chain, key)
        return cls(trusted_ca, certs)


class _Listener:
    def __init__(self, mode: str, context: ssl.SSLContext | None) -> None:
        self.mode = mode
        self._context = context
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"faulty-idp-{mode}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self.mode == "reset":
                conn.recv(65536)  # after the request, so the client is reading when the RST comes
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.mode == "silent":
                with self._lock:
                    self._held.append(conn)  # closed by stop(), long after the client gave up
                return
            elif self._context is not None:
                with self._context.wrap_socket(conn, server_side=True):
                    pass  # the client refuses the certificate: the handshake raises
            else:
                conn.recv(65536)  # the request (its first segment is enough)
                conn.sendall(HALF_RESPONSE if self.mode == "mid-response" else NOT_HTTP)
        except OSError:  # ssl.SSLError included: the expected end of the TLS faults
            pass
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        with self._lock:
            for conn in self._held:
                with contextlib.suppress(OSError):
                    conn.close()
            self._held.clear()


class FaultyIdp:
    """One listener per mode; `url(mode)` is a token endpoint URL that fails that way."""

    MODES = ("reset", "mid-response", "garbage", "silent")

    def __init__(self, tls: TlsFaults) -> None:
        self._listeners: dict[str, _Listener] = {mode: _Listener(mode, None) for mode in self.MODES}
        for name, (chain, key) in tls.certs.items():
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(chain, key)
            self._listeners[f"tls:{name}"] = _Listener(f"tls:{name}", context)
        # for plaintext sent to a TLS server: any certificate, a listener of its own to count
        self._listeners["tls-only"] = _Listener("tls-only", context)

    def url(self, mode: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self._listeners[mode].port}/token"

    def accepted(self, mode: str) -> int:
        """Connections accepted so far in `mode`: one per token request the proxy made."""
        return self._listeners[mode].accepted

    def stop(self) -> None:
        for listener in self._listeners.values():
            listener.stop()
