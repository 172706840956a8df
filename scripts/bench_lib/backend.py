"""The benchmarks' backend: ``python -m bench_lib.backend PORTSPEC...`` serves HTTP/1.1 on
127.0.0.1 and prints one JSON line ``{"ports": [...]}`` once it listens.

Each PORTSPEC is ``protected`` or ``open``: a protected port answers 401 to a request without
``Authorization: Bearer ...``, or ``Authorization: DPoP ...`` with a ``DPoP`` proof header (so a
proxy that failed to add a token shows up as errors, never as fast answers; the proof is not
verified: the tests do that), an open port answers every request. Answers are a few bytes with
keep-alive.

The devservers' backend is a threaded ``http.server`` that records every request: fine for tests,
but too slow and too memory-hungry to sit behind a proxy being measured. This one is a bare
asyncio protocol so that mitmdump, not the backend, is what the figures measure.
"""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import sys

HOST = "127.0.0.1"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
DENIED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 9\r\n\r\nno token\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 65536


class Responder(asyncio.Protocol):
    """One connection: answers each request head as it arrives (pipelining included)."""

    def __init__(self, protected: bool) -> None:
        self.protected = protected
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, rest = self.buffer[:end], self.buffer[end + 4 :]
            length = _content_length(head)
            if length is None or len(rest) < length:
                if length is None:
                    self.transport.write(BAD)
                    self.transport.close()
                return  # wait for the rest of the body
            self.buffer = rest[length:]
            self.transport.write(self._answer(head))
        if len(self.buffer) > MAX_HEAD:
            self.transport.write(BAD)
            self.transport.close()

    def _answer(self, head: bytes) -> bytes:
        if not self.protected:
            return OK
        scheme, proof = b"", False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"authorization":
                scheme = value.strip().partition(b" ")[0].lower()
            elif name == b"dpop":
                proof = True
        return OK if scheme == b"bearer" or (scheme == b"dpop" and proof) else DENIED


def _content_length(head: bytes) -> int | None:
    """The request's body length; None when it is chunked or malformed (not used here)."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
        elif name == b"transfer-encoding":
            return None
    return length if length >= 0 else None


async def serve(kinds: list[str]) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for kind in kinds:
        factory = functools.partial(Responder, kind == "protected")
        servers.append(await loop.create_server(factory, HOST, 0, backlog=1024))
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    print(json.dumps({"ports": ports}), flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str]) -> int:
    if not argv or any(kind not in ("protected", "open") for kind in argv):
        print("usage: python -m bench_lib.backend (protected|open)...", file=sys.stderr)
        return 2
    asyncio.run(serve(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
