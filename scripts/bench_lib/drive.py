"""Load from a separate process: wrk where installed (and asked for), else bench_lib.load.

Throughput runs fail loudly on any answer that is not 2xx: a proxy that refuses requests is fast,
and its speed must never pass for a figure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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

    def start(self, url: str, seconds: float, tokens: Sequence[str] = ()) -> Load:
        """Starts ``seconds`` of load on keep-alive connections to ``url``; ``Load.result`` waits
        for it. Several may run at once. ``tokens``: the callers' bearer tokens, one request
        after another in turn (wrk: by a Lua script)."""
        script = None
        if self.kind == "wrk":
            cmd = ["wrk", "-t1", f"-c{self.connections}", f"-d{max(1, round(seconds))}s", url]
            if tokens:
                script = _callers_script(tokens)
                cmd[1:1] = ["-s", str(script)]
        else:
            job: dict[str, Any] = {"mode": "closed", "urls": [url], "connections": self.connections}
            job["duration"] = seconds
            if tokens:
                job["tokens"] = list(tokens)
            cmd = [sys.executable, "-m", "bench_lib.load", json.dumps(job)]
        return Load(self.kind, url, seconds, _spawn(cmd), script)


@dataclass
class Load:
    """One throughput load client at work (``Client.start``)."""

    kind: str
    url: str
    seconds: float
    proc: subprocess.Popen[str]
    script: Path | None = None  # wrk's Lua script, removed once it is done

    def result(self) -> tuple[int, float]:
        """(requests answered 2xx, seconds taken); BenchError on anything else."""
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise BenchError(f"{self.url}: the load client did not finish") from None
        finally:
            if self.script is not None:
                self.script.unlink(missing_ok=True)
        if self.kind == "wrk":
            return _wrk_result(self.url, self.proc.returncode, out, err)
        if self.proc.returncode != 0:
            raise BenchError(f"load client failed ({self.proc.returncode}):\n{err}")
        result = json.loads(out)
        require_ok(result["statuses"], self.url)
        return int(result["requests"]), float(result["seconds"])


def _callers_script(tokens: Sequence[str]) -> Path:
    """A wrk script whose requests carry the callers' tokens in turn."""
    # The IdP's tokens are printable ASCII: as a JSON string, each is a Lua string too.
    listed = ",\n".join(json.dumps(token) for token in tokens)
    text = (
        f"local tokens = {{\n{listed}\n}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n"
        '  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. tokens[n % #tokens + 1]})'
        "\nend\n"
    )
    handle, name = tempfile.mkstemp(prefix="bench-callers-", suffix=".lua")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    return Path(name)


def _spawn(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


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


def _wrk_result(url: str, returncode: int, out: str, err: str) -> tuple[int, float]:
    count = WRK_DONE.search(out)
    if returncode != 0 or count is None:
        raise BenchError(f"wrk failed ({returncode}):\n{out}{err}")
    bad = WRK_BAD.findall(out)
    if bad:
        raise BenchError(f"{url}: wrk saw {'; '.join(': '.join(b) for b in bad)}")
    return int(count.group(1)), float(count.group(2)) * WRK_UNITS[count.group(3)]
