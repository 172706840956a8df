"""A protected backend that speaks HTTP/2 and WebSocket, as most HTTPS APIs do: hypercorn (a
real HTTP/2 server) on a free loopback port with the test CA's certificate, serving h2_app."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness import TlsFiles
from procs import OutputReader
from procs import popen
from procs import stop_process

RUNNING = re.compile(r"Running on https://127\.0\.0\.1:(\d+)")


class H2Backend:
    name = "hypercorn"

    def __init__(self, tls: TlsFiles) -> None:
        cmd = [
            *(sys.executable, "-m", "hypercorn", "--bind", "127.0.0.1:0"),
            *("--certfile", str(tls.server_cert), "--keyfile", str(tls.server_key)),
            "h2_app:app",
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
