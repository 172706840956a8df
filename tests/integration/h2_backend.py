"""A protected backend that speaks HTTP/2, as most HTTPS APIs do: hypercorn (a real HTTP/2
server) serving an app that answers each request with the header names and the Authorization
values it received, and the HTTP version it was spoken in. A WebSocket handshake is accepted
and answered the same way in a first message; every message after it is echoed back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import TlsFiles
from procs import OutputReader
from procs import popen
from procs import stop_process

RUNNING = re.compile(r"Running on https://127\.0\.0\.1:(\d+)")


def _seen(scope: dict[str, Any]) -> bytes:
    headers = [(name.decode(), value.decode()) for name, value in scope["headers"]]
    seen = {
        "http_version": scope["http_version"],
        "header_names": [name for name, _ in headers],
        "authorization": [value for name, value in headers if name == "authorization"],
    }
    return json.dumps(seen).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": _seen(scope)})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": _seen(scope).decode()})
        while (event := await receive())["type"] == "websocket.receive":
            await send({**event, "type": "websocket.send"})


class H2Backend:
    name = "hypercorn"

    def __init__(self, tls: TlsFiles) -> None:
        cmd = [
            *(sys.executable, "-m", "hypercorn", "--bind", "127.0.0.1:0"),
            *("--certfile", str(tls.server_cert), "--keyfile", str(tls.server_key)),
            "h2_backend:app",
        ]
        self.proc = popen(cmd, cwd=Path(__file__).parent, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        self._reader = OutputReader(self.proc.stdout, self.name)
        match = self._reader.wait_for(RUNNING, timeout=15)
        if match is None:
            self.stop()
            raise RuntimeError(f"hypercorn did not start:\n{self.output()}")
        self.url = f"https://localhost:{match.group(1)}"
        self.host = f"localhost:{match.group(1)}"

    def output(self) -> str:
        return self._reader.text()

    def stop(self) -> None:
        stop_process(self.proc)
        self._reader.join()
