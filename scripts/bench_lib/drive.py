"""Load from a separate process: wrk where installed (and asked for), else bench_lib.load.

Throughput runs fail loudly on any answer that is not 2xx: a proxy that refuses requests is fast,
and its speed must never pass for a figure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from .procs import BenchError
from .procs import child_env

WRK_DONE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)\b", re.MULTILINE)
WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
WRK_BAD = re.compile(r"^\s*(Non-2xx or 3xx responses|Socket errors):\s*(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Client:
    """How throughput is driven: ``wrk`` or ``python`` (bench_lib.load); connections per run."""

    kind: str
    connections: int

    @classmethod
    def choose(cls, wanted: str, connections: int) -> Client:
        if wanted == "auto":
            wanted = "wrk" if shutil.which("wrk") else "python"
        if wanted == "wrk" and not shutil.which("wrk"):
            raise BenchError("--client wrk: wrk is not installed")
        return cls(wanted, connections)

    def describe(self) -> str:
        if self.kind == "wrk":
            version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
            first = (version.stdout or version.stderr).splitlines()[:1]
            return f"{first[0].split(' [')[0] if first else 'wrk'}, {self.connections} connections"
        return f"bench_lib.load (asyncio), {self.connections} connections"

    def throughput(self, url: str, seconds: float) -> tuple[int, float]:
        """(requests answered 2xx, seconds taken) on keep-alive connections for ``seconds``."""
        if self.kind == "wrk":
            return _wrk(url, self.connections, seconds)
        result = run_job(
            {"mode": "closed", "urls": [url], "connections": self.connections, "duration": seconds}
        )
        require_ok(result["statuses"], url)
        return int(result["requests"]), float(result["seconds"])


def run_job(job: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """One bench_lib.load job in its own process; its JSON result."""
    limit = timeout if timeout is not None else float(job.get("duration", 60)) + 120
    done = subprocess.run(
        [sys.executable, "-m", "bench_lib.load"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=limit,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"load client failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def require_ok(statuses: dict[str, int], what: str) -> None:
    bad = {code: n for code, n in statuses.items() if not code.startswith("2")}
    if bad:
        raise BenchError(f"{what}: answers other than 2xx ({bad}; status 0 = no answer)")


def _wrk(url: str, connections: int, seconds: float) -> tuple[int, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=child_env(), timeout=seconds + 60, check=False
    )
    count = WRK_DONE.search(done.stdout)
    if done.returncode != 0 or count is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    bad = WRK_BAD.findall(done.stdout)
    if bad:
        raise BenchError(f"{url}: wrk saw {'; '.join(': '.join(b) for b in bad)}")
    return int(count.group(1)), float(count.group(2)) * WRK_UNITS[count.group(3)]
