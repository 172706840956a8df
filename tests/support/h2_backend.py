"""A protected backend that speaks HTTP/2 and WebSocket, as most HTTPS APIs do: hypercorn (a
real HTTP/2 server) on a free loopback port with the test CA's certificate, serving h2_app."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.devservers import TlsFiles
from tests.support.procs import Child


class H2Backend:
    name = "hypercorn"

    def __init__(self, tls: TlsFiles) -> None:
        cmd = [
            *(sys.executable, "-m", "hypercorn", "--bind", "127.0.0.1:0"),
            *("--certfile", str(tls.server_cert), "--keyfile", str(tls.server_key)),
            "h2_app:app",  # imported from its own folder, the child's working directory
        ]
        running = r"Running on https://127\.0\.0\.1:(\d+)"
        self.child = Child(self.name, cmd, ready=running, timeout=15, cwd=Path(__file__).parent)
        assert self.child.ready_match is not None
        port = self.child.ready_match.group(1)
        self.url = f"https://localhost:{port}"
        self.host = f"localhost:{port}"

    def output(self) -> str:
        return self.child.output()

    def stop(self) -> None:
        self.child.stop()
