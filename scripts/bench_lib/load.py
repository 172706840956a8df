"""The benchmarks' Python load client, run as its own process so that its CPU is not the
orchestrator's: ``python -m bench_lib.load`` reads one JSON job on stdin and prints one JSON result.

Jobs (``urls`` are ``http://127.0.0.1:PORT/path``):

- ``{"mode": "closed", "urls": [...], "connections": C, "duration": S}`` (or ``"count": N``
  instead of a duration): C keep-alive connections, each sending its next request as soon as the
  last is answered; with ``"tokens": [...]``, request n carries ``Authorization: Bearer`` and
  token n modulo their number (many callers). Result: requests, seconds, rps, statuses, p50/p99
  latency in ms.
- ``{"mode": "open", "targets": [{"url": U, "rate": R}, ...], "duration": S}``: requests start on a
  fixed schedule whatever the answers do, so a stall shows up as latency of every request it
  delays (no coordinated omission); latency is counted from the scheduled start. Result:
  ``records``, one ``[target, scheduled wall time, latency s, status]`` per request.
- ``{"mode": "crowd", "urls": [...], "callers": N}``: N connections made first, then every
  caller sends one request at the same moment. Result: statuses, p50/max latency in ms.

A failed request (connection error, timeout) has status 0. wrk is faster where installed; this
client only has to keep up with mitmdump, which costs milliseconds of CPU per request.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.parse
from collections import Counter
from typing import Any

TIMEOUT = 15.0  # seconds for one request, connecting included
MAX_CONNECTIONS = 256  # per target in open mode


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port``."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        self.request = (self.head + "\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, token: str | None = None) -> int:
        """Sends the request (with this bearer token), reads the whole answer; its status, or 0
        on any failure."""
        request = self.request
        if token is not None:
            request = f"{self.head}Authorization: Bearer {token}\r\n\r\n".encode()
        try:
            return await asyncio.wait_for(self._exchange(request), TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
        except TimeoutError:
            self.close()
        return 0

    async def _exchange(self, request: bytes) -> int:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "connection" and "close" in value.lower():
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed(job: dict[str, Any]) -> dict[str, Any]:
    urls: list[str] = job["urls"]
    budget = job.get("count")
    tokens: list[str] = job.get("tokens", [])
    deadline = time.perf_counter() + float(job.get("duration", 3600))
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    sent = 0

    async def worker(url: str) -> None:
        nonlocal sent
        connection = Connection(url)
        while time.perf_counter() < deadline and (budget is None or sent < budget):
            token = tokens[sent % len(tokens)] if tokens else None
            sent += 1
            started = time.perf_counter()
            statuses[await connection.get(token)] += 1
            latencies.append(time.perf_counter() - started)
        connection.close()

    begin = time.perf_counter()
    count = int(job["connections"])
    await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(count)))
    seconds = time.perf_counter() - begin
    done = sum(statuses.values())
    return {
        "requests": done,
        "seconds": seconds,
        "rps": done / seconds if seconds else 0.0,
        "statuses": {str(k): v for k, v in statuses.items()},
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def open_loop(job: dict[str, Any]) -> dict[str, Any]:
    records: list[list[float]] = []
    duration = float(job["duration"])
    start_wall, start = time.time() + 0.05, time.perf_counter() + 0.05
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, pool: asyncio.Queue[Connection], due: float) -> None:
        connection = await pool.get()
        status = await connection.get()
        pool.put_nowait(connection)
        records.append([index, start_wall + (due - start), time.perf_counter() - due, status])

    async def schedule(index: int, url: str, rate: float) -> None:
        pool: asyncio.Queue[Connection] = asyncio.LifoQueue()  # the warmest connection first
        for _ in range(MAX_CONNECTIONS):
            pool.put_nowait(Connection(url))
        for n in range(int(duration * rate)):
            due = start + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(one(index, pool, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    targets = job["targets"]
    await asyncio.gather(*(schedule(i, t["url"], float(t["rate"])) for i, t in enumerate(targets)))
    if tasks:
        await asyncio.wait(set(tasks), timeout=TIMEOUT * 2)
    records.sort(key=lambda record: record[1])
    return {"records": records}


async def crowd(job: dict[str, Any]) -> dict[str, Any]:
    urls: list[str] = job["urls"]
    connections = [Connection(urls[i % len(urls)]) for i in range(int(job["callers"]))]
    await asyncio.gather(*(c.connect() for c in connections), return_exceptions=True)
    begin = time.perf_counter()
    results = await asyncio.gather(*(c.get() for c in connections))
    latency = time.perf_counter() - begin
    for connection in connections:
        connection.close()
    return {"statuses": {str(k): v for k, v in Counter(results).items()}, "max_ms": latency * 1000}


def main() -> int:
    # The job: a JSON argument (load clients started side by side), else standard input.
    job = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    runners = {"closed": closed, "open": open_loop, "crowd": crowd}
    result = asyncio.run(runners[job["mode"]](job))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
