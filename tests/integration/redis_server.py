"""A real redis-server (Debian's package) on a loopback port, killed and restarted at will.

Nothing is saved to disk, so a restart is a Redis that lost its data, as after a crash of a
cache-only Redis. `.ci/run` installs redis-server; without it these tests fail, not skip.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from harness import TlsFiles
from procs import OutputReader
from procs import popen
from procs import stop_process

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    name = "redis-server"

    def __init__(
        self, workdir: Path, *, tls: TlsFiles | None = None, password: str | None = None
    ) -> None:
        """`tls`: serve TLS only (rediss://) with that server certificate; `password`: AUTH."""
        self.workdir = workdir
        self.tls = tls
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self._reader: OutputReader | None = None
        self._earlier = ""

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        if self.tls is None:
            return redis.Redis("127.0.0.1", self.port, password=self.password, socket_timeout=5)
        return redis.Redis(
            "127.0.0.1",
            self.port,
            password=self.password,
            socket_timeout=5,
            ssl=True,
            ssl_ca_certs=str(self.tls.ca_cert),
        )

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--dir", str(self.workdir)]
        if self.tls is None:
            cmd += ["--port", str(self.port)]
        else:
            cmd += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            cmd += ["--tls-cert-file", str(self.tls.server_cert)]
            cmd += ["--tls-key-file", str(self.tls.server_key)]
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        self.proc = popen(cmd, cwd=self.workdir, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        self._reader = OutputReader(self.proc.stdout, "redis-server")
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start:\n{self.output()}") from None
                time.sleep(0.02)  # polls for readiness; no assertion depends on this

    def kill(self) -> None:
        """SIGKILL: gone at once, with everything it held (tokens, locks, the fleet key)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._reader is not None:
            self._earlier += self._reader.text()
            self._reader = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a Redis that hangs)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
            stop_process(self.proc)

    def output(self) -> str:
        return self._earlier + (self._reader.text() if self._reader is not None else "")
