"""Soak test: many requests through the real mitmdump while the authorization server fails on
and off; run through ``scripts/soak`` (``--help`` for the options).

The dev token server issues 5-second tokens, so the proxy renews one every 2.5 s, and every few
seconds it is made to fail for a while (HTTP 500, slower than the token timeout, closing
connections unanswered, 503 with Retry-After). An async httpx client sends the requests through
the proxy at a modest concurrency. Every answer is classified (scripts/soak_answers.py):
served (a 200 from the backend, which validated the token), refused (the proxy's 502/503
problem: no valid token could be had) or wrong (anything else); and, at the end, the backend
must have validated exactly as many requests as were served. Reported: wrong answers (the goal
is 0), the count of each status, token requests, the requests the backend rejected because their
token expired on the way there (injected in its last moments while the IdP was failing: the
proxy then renews and replays, or refuses), and the RSS and open file descriptors of the
mitmdump process at the start (after a warm-up) and at the end (the goal is flat). The exit code
is 1 when any answer was wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from soak_answers import Tally
from soak_answers import classify

from mitm_oauth2.devservers import DEFAULT_CLIENTS
from mitm_oauth2.testing import OutputReader
from mitm_oauth2.testing import ProxyProcess
from mitm_oauth2.testing import stop_process

ROOT = Path(__file__).resolve().parents[1]
LIFETIME = 5  # seconds: the tokens' expires_in
TOKEN_TIMEOUT = 1  # seconds: the backend's token_timeout, so "slow" below is beyond it
# The authorization server's weather, in turn, each (name, knobs, seconds). Faults last less
# than a token lives, so some renewals fail while the token is still good, others after.
PHASES: tuple[tuple[str, dict[str, Any], float], ...] = (
    ("healthy", {}, 4.0),
    ("HTTP 500", {"status": 500}, 3.0),
    ("healthy", {}, 4.0),
    ("slow", {"delay": 1.5}, 3.0),
    ("healthy", {}, 4.0),
    ("down", {"down": True}, 6.0),
    ("healthy", {}, 4.0),
    ("503 Retry-After", {"status": 503, "retry_after": 1}, 3.0),
)
SAMPLE_EVERY = 60.0  # seconds between readings of mitmdump's RSS and fds during the run
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


@dataclass(frozen=True)
class Process:
    """What /proc says about a process."""

    rss_kib: int
    fds: int

    @classmethod
    def read(cls, pid: int) -> Process:
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        return cls(rss, len(os.listdir(f"/proc/{pid}/fd")))


class DevServers:
    """The dev token server and backend in a child process of their own: in this process their
    threads would compete with the load generator for the interpreter."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mitm_oauth2.devservers"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        self._output = OutputReader(self.proc.stdout, "devservers-output")
        match = self._output.wait_for(re.compile(r"^\{.*\}$"), 15)
        if match is None:
            self.stop()
            raise RuntimeError(f"devservers did not start:\n{self._output.text()}")
        urls = json.loads(match.group(0))
        self.token_url: str = urls["token_url"]
        self.backend_url: str = urls["backend_url"]
        self.admin_url: str = urls["admin_url"]

    def stop(self) -> None:
        stop_process(self.proc)
        self._output.join()


async def admin(client: httpx.AsyncClient, servers: DevServers, knobs: dict[str, Any]) -> None:
    """Sets the token server's weather: healthy, 5-second tokens, unless `knobs` say otherwise."""
    base = {"expires_in": LIFETIME, "status": None, "delay": 0, "down": False, "retry_after": None}
    answer = await client.post(f"{servers.admin_url}/config", json={**base, **knobs})
    answer.raise_for_status()


async def weather(servers: DevServers, stop: asyncio.Event, log: list[str]) -> None:
    """Cycles the token server through PHASES until `stop` is set; healthy at the end."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        started = time.monotonic()
        while not stop.is_set():
            for name, knobs, seconds in PHASES:
                await admin(client, servers, knobs)
                log.append(f"{time.monotonic() - started:7.1f} s  {name}")
                try:
                    await asyncio.wait_for(stop.wait(), seconds)
                except TimeoutError:
                    continue
                break
        await admin(client, servers, {})


async def drive(proxy_url: str, url: str, count: int, concurrency: int, tally: Tally) -> None:
    """`count` GETs of `url`/<n> through the proxy, `concurrency` at a time."""
    numbers = iter(range(count))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        proxy=proxy_url, trust_env=False, timeout=30, limits=limits
    ) as client:

        async def worker() -> None:
            for n in numbers:
                try:
                    answer = await client.get(f"{url}/{n}")
                except httpx.HTTPError as e:
                    tally.add(type(e).__name__, "wrong", f"request {n}: {e!r}")
                    continue
                outcome, why = classify(answer)
                tally.add(str(answer.status_code), outcome, f"request {n}: {why}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def backend_stats(servers: DevServers) -> dict[str, Any]:
    with httpx.Client(trust_env=False, timeout=60) as client:
        answer = client.get(f"{servers.admin_url}/stats")
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
    return stats


def config(servers: DevServers, path: Path) -> None:
    client_id, secret = next(iter(DEFAULT_CLIENTS.items()))
    path.write_text(
        "[[backend]]\n"
        'name = "soak"\n'
        f'hosts = ["{servers.backend_url.removeprefix("http://")}"]\n'
        f'token_url = "{servers.token_url}"\n'
        f"client_id = {json.dumps(client_id)}\n"
        f"client_secret = {json.dumps(secret)}\n"
        f"token_timeout = {TOKEN_TIMEOUT}\n",
        encoding="utf-8",
    )


@contextmanager
def processes(workdir: Path) -> Iterator[tuple[DevServers, ProxyProcess]]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "addon"), env.get("PYTHONPATH")]))
    servers = DevServers(env)
    proxy: ProxyProcess | None = None
    try:
        config(servers, workdir / "backends.toml")
        proxy = ProxyProcess(
            workdir / "backends.toml",
            *("--set", "connection_strategy=lazy", "--set", "flow_detail=0"),
            script=ROOT / "addon" / "oauth2_backend.py",
            workdir=workdir,
            env=env,
        )
        proxy.start()
        yield servers, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        servers.stop()


async def sample(pid: int, stop: asyncio.Event, samples: list[Process]) -> None:
    """Reads the process every SAMPLE_EVERY seconds until `stop`: flat, or still growing?"""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
        except TimeoutError:
            samples.append(Process.read(pid))
        else:
            return


def describe(before: Process, after: Process, samples: list[Process]) -> list[str]:
    lines = [
        f"mitmdump RSS: start {before.rss_kib / 1024:.1f} MiB, end {after.rss_kib / 1024:.1f} MiB",
        f"mitmdump open fds: start {before.fds}, end {after.fds}",
    ]
    if samples:
        rss = " ".join(f"{p.rss_kib / 1024:.1f}" for p in samples)
        fds = " ".join(str(p.fds) for p in samples)
        lines.append(f"  every {SAMPLE_EVERY:g} s: RSS MiB {rss}; fds {fds}")
    return lines


async def soak(args: argparse.Namespace, servers: DevServers, proxy: ProxyProcess) -> int:
    assert proxy.proc is not None
    pid, url = proxy.proc.pid, f"{servers.backend_url}/soak"
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        await admin(client, servers, {})
    # Before the start figures: the proxy's connections and token are there, as in service.
    warm = Tally()
    await drive(
        proxy.url, f"{servers.backend_url}/warm-up", args.concurrency * 10, args.concurrency, warm
    )
    before = Process.read(pid)
    tally, stop = Tally(), asyncio.Event()
    log: list[str] = []
    started = time.monotonic()
    samples: list[Process] = []
    faults = asyncio.get_running_loop().create_task(weather(servers, stop, log))
    sampler = asyncio.get_running_loop().create_task(sample(pid, stop, samples))
    try:
        await drive(proxy.url, url, args.requests, args.concurrency, tally)
    finally:
        stop.set()
        await faults
        await sampler
    elapsed = time.monotonic() - started
    after = Process.read(pid)
    stats = backend_stats(servers)
    received = [r for r in stats["backend_requests"] if r["path"].startswith("/soak/")]
    validated = sum(1 for r in received if r["ok"])
    report = [
        f"requests: {args.requests} at concurrency {args.concurrency} in {elapsed:.1f} s "
        f"({args.requests / elapsed:.0f}/s), {LIFETIME}-second tokens",
        "statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())),
        "outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.outcomes.items())),
        f"token requests: {stats['token_requests']} "
        f"(answered {sum(1 for e in stats['token_request_log'] if e['status'] == 200)} with a "
        f"token; {len(log)} IdP phases, {sum(1 for line in log if 'healthy' not in line)} "
        "of them faulty)",
        f"backend received: {len(received)}, {validated} with a valid token; rejected "
        f"{len(received) - validated} whose token expired on the way (each then replayed with a "
        "fresh token, or refused while none could be had)",
        *describe(before, after, samples),
    ]
    wrong = tally.outcomes["wrong"] + warm.outcomes["wrong"]
    if validated != tally.outcomes["served"]:  # each served answer is one validated request
        wrong += abs(validated - tally.outcomes["served"])
        tally.wrong.append(f"{validated} requests validated by the backend, not one per served")
    report.append(f"wrong answers: {wrong}")
    print("\n".join(report))
    for why in tally.wrong + warm.wrong:
        print(f"  wrong: {why}")
    if args.verbose:
        print("IdP phases:\n" + "\n".join(log))
    return 1 if wrong else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=100_000, help="default: 100000")
    parser.add_argument("--concurrency", type=int, default=16, help="default: 16")
    parser.add_argument("--verbose", action="store_true", help="also print the IdP's phases")
    args = parser.parse_args(argv)
    if args.requests < 1 or not 1 <= args.concurrency <= 256:
        parser.error("--requests must be at least 1, --concurrency 1 to 256")
    with tempfile.TemporaryDirectory(prefix="mitm-oauth2-soak-") as tmp:
        try:
            with processes(Path(tmp)) as (servers, proxy):
                return asyncio.run(soak(args, servers, proxy))
        except KeyboardInterrupt:
            print("\nInterrupted.")
            return 130


if __name__ == "__main__":
    sys.exit(main())
