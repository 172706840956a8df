"""A TCP relay on 127.0.0.1 in front of a server, for crash tests: it can hold what a client sends
(so nothing reaches the server) or what the server answers (so the server has acted and the
client has not heard), until the test lets it go on or drops it. Every wait is bounded."""

from __future__ import annotations

import contextlib
import enum
import socket
import threading

WAIT = 20.0  # seconds a held chunk waits for the test at most


class Hold(enum.Enum):
    NOTHING = "nothing"
    REQUEST = "request"  # the next chunk a client sends
    ANSWER = "answer"  # the next chunk the server sends


class TcpGate:
    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._hold = Hold.NOTHING
        self._lock = threading.Lock()
        self.held = threading.Event()  # a chunk is being held
        self._released = threading.Event()
        self._deliver = True
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="tcp-gate").start()

    def hold(self, what: Hold) -> None:
        """Holds the next chunk going that way (one, then the gate passes everything again)."""
        with self._lock:
            self.held.clear()
            self._released.clear()
            self._hold = what

    def release(self, *, deliver: bool) -> None:
        """Lets the held chunk go on (`deliver`), or drops it and closes its connection."""
        with self._lock:
            self._deliver = deliver
            self._hold = Hold.NOTHING
            self._released.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target, timeout=WAIT)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            for source, sink, way in (
                (client, server, Hold.REQUEST),
                (server, client, Hold.ANSWER),
            ):
                threading.Thread(
                    target=self._pump, args=(source, sink, way), daemon=True, name="tcp-gate-pump"
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, way: Hold) -> None:
        try:
            while chunk := source.recv(65536):
                with self._lock:
                    holding = self._hold is way and not self.held.is_set()
                    if holding:
                        self.held.set()
                if holding and not (self._released.wait(WAIT) and self._deliver):
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for end in self._sockets:
            with contextlib.suppress(OSError):
                end.close()
