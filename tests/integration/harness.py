"""Drive real processes on loopback for the integration tests: devservers, mitmdump, curl.

No mocks. Every wait has a timeout and waits on output (never on a fixed sleep). Child
processes get the test's environment minus proxy variables, so nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from typing import Any
from typing import Protocol

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
ADDON_DIR = REPO / "addon"
ADDON_SCRIPT = ADDON_DIR / "oauth2_backend.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"
CURL = "/usr/bin/curl"
# "HTTP(S) proxy listening at 127.0.0.1:N." or "reverse proxy to URL listening at 127.0.0.1:N."
LISTENING = re.compile(r"listening at .*:(\d+)\.?\s*$")
DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo secret with : % + & chars"  # the devservers' default client
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment without proxy variables, with addon/ on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    paths = [str(ADDON_DIR), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def basic_auth(client_id: str, secret: str) -> str:
    """Authorization header value per RFC 6749 §2.3.1 (form-urlencode each part first)."""
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def token_id(token: str) -> str:
    """What the devservers' backend echoes as ``token_id`` for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def toml_backend(**fields: Any) -> str:
    """One ``[[backend]]`` table; strings are quoted as JSON, which TOML basic strings accept."""
    lines = ["[[backend]]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run ``/usr/bin/curl -q -sS *args`` (no ~/.curlrc, no proxy variables); never checks."""
    return subprocess.run(
        [CURL, "-q", "-sS", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


class OutputReader:
    """Collects a child's text stream line by line on a daemon thread."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self._lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(stream,), name=name, daemon=True)
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """First match of ``pattern`` in a line; None on timeout or end of stream."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if match := pattern.search(line):
                        return match
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def join(self, timeout: float = 5) -> None:
        self._thread.join(timeout)


def stop_process(proc: subprocess.Popen[str], timeout: float = 10) -> int:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def _popen(cmd: list[str], cwd: Path | None, stderr: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=subprocess_env(),
        cwd=cwd,
    )


@dataclass(frozen=True)
class TlsFiles:
    """A test CA (a ``trustme.CA``) and a server certificate for localhost and 127.0.0.1."""

    ca: Any
    ca_cert: Path
    server_cert: Path
    server_key: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


class DevServersProcess:
    """``python -m mitm_oauth2.devservers`` as a child process, plus admin helpers."""

    name = "devservers"

    def __init__(
        self,
        *,
        tls: TlsFiles | None = None,
        clients: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 10,
    ) -> None:
        cmd = [sys.executable, "-m", "mitm_oauth2.devservers"]
        if clients is not None:
            cmd += ["--clients", json.dumps(clients)]
        if tls is not None:
            cmd += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
        self.tls = tls
        self.proc = _popen(cmd, cwd, subprocess.PIPE)
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._stdout = OutputReader(self.proc.stdout, "devservers-stdout")
        self._stderr = OutputReader(self.proc.stderr, "devservers-stderr")
        self.admin = httpx.Client(trust_env=False, timeout=10)
        match = self._stdout.wait_for(re.compile(r"^\{.*\}$"), timeout)
        if match is None:
            rc = self.stop()
            pytest.fail(
                f"devservers did not start within {timeout}s (exit code {rc}):\n"
                f"$ {shlex.join(cmd)}\n{self.output()}",
                pytrace=False,
            )
        urls = json.loads(match.group(0))
        self.token_url: str = urls["token_url"]
        self.backend_url: str = urls["backend_url"]
        self.admin_url: str = urls["admin_url"]
        # "127.0.0.1:PORT", as written in a backend's ``hosts`` list
        self.backend_host = urllib.parse.urlsplit(self.backend_url).netloc

    def _admin(self, action: str, knobs: dict[str, Any] | None = None) -> Any:
        response = self.admin.post(f"{self.admin_url}/{action}", json=knobs or {})
        response.raise_for_status()
        return response.json()

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change token endpoint knobs (expires_in, token_type, delay, status, body, ...)."""
        result: dict[str, Any] = self._admin("config", knobs)
        return result

    def reset(self) -> None:
        self._admin("reset")

    def revoke(self) -> None:
        self._admin("revoke")

    def stats(self) -> dict[str, Any]:
        response = self.admin.get(f"{self.admin_url}/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def token_requests(self) -> int:
        return int(self.stats()["token_requests"])

    def backend_requests(self) -> list[dict[str, Any]]:
        return list(self.stats()["backend_requests"])

    def fetch_token(
        self, client_id: str = DEMO_CLIENT_ID, secret: str = DEMO_CLIENT_SECRET, **form: str
    ) -> str:
        """Get a token directly (Basic auth), bypassing any proxy. Counts as a token request."""
        response = self.admin.post(
            self.token_url,
            data={"grant_type": "client_credentials", **form},
            headers={"Authorization": basic_auth(client_id, secret)},
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def backend_client(self, **kwargs: Any) -> httpx.Client:
        """A direct (no proxy) client for the backend, trusting the test CA when TLS is on."""
        verify = self.tls.ssl_context() if self.tls else True
        return httpx.Client(base_url=self.backend_url, trust_env=False, verify=verify, **kwargs)

    def output(self) -> str:
        return f"--- stdout ---\n{self._stdout.text()}--- stderr ---\n{self._stderr.text()}"

    def stop(self) -> int:
        self.admin.close()
        rc = stop_process(self.proc)
        self._stdout.join()
        self._stderr.join()
        return rc


def mitmdump_args(
    *,
    config: Path,
    confdir: Path,
    cache_dir: Path,
    upstream_ca: Path | None,
    lazy: bool,
    mode: str | None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """mitmdump arguments except --listen-host/--listen-port."""
    args = ["--set", f"confdir={confdir}"]
    args += ["--set", f"oauth2_config={config}", "--set", f"oauth2_cache_dir={cache_dir}"]
    if upstream_ca is not None:
        args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    if lazy:
        args += ["--set", "connection_strategy=lazy"]
    if mode is not None:
        args += ["--mode", mode]
    return [*args, "-s", str(ADDON_SCRIPT), *extra]


def run_mitmdump(args: list[str], *, cwd: Path | None, timeout: float = 30) -> tuple[int, str]:
    """Run mitmdump to completion (startup-error tests): (exit code, stdout+stderr)."""
    cmd = [str(MITMDUMP), "--listen-host", "127.0.0.1", "--listen-port", "0", *args]
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=subprocess_env(),
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:  # the child has been killed by now
        out = e.output.decode(errors="replace") if isinstance(e.output, bytes) else e.output
        pytest.fail(f"mitmdump still running after {timeout}s:\n$ {shlex.join(cmd)}\n{out}")
    return done.returncode, done.stdout


class Proxy:
    """A mitmdump child process with the addon loaded, listening on 127.0.0.1."""

    def __init__(
        self,
        args: list[str],
        *,
        confdir: Path,
        config_path: Path,
        cache_dir: Path,
        cwd: Path | None,
        name: str = "mitmdump",
        timeout: float = 30,
    ) -> None:
        self.args = args
        self.confdir = confdir
        self.config_path = config_path
        self.cache_dir = cache_dir
        self.name = name
        self.timeout = timeout
        self._cwd = cwd
        self._runs: list[OutputReader] = []
        self._listen_port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        """mitmproxy's public CA certificate: clients trust this to talk TLS through the proxy."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10)
        return httpx.Client(proxy=self.url, verify=self.ssl_context(), trust_env=False, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10)
        verify = self.ssl_context()
        return httpx.AsyncClient(proxy=self.url, verify=verify, trust_env=False, **kwargs)

    def start(self) -> Proxy:
        listen = ["--listen-host", "127.0.0.1", "--listen-port", str(self._listen_port)]
        cmd = [str(MITMDUMP), *listen, *self.args]
        self.proc = _popen(cmd, self._cwd, subprocess.STDOUT)
        assert self.proc.stdout is not None
        reader = OutputReader(self.proc.stdout, f"{self.name}-output")
        self._runs.append(reader)
        match = reader.wait_for(LISTENING, self.timeout)
        if match is None:
            rc = self.stop()
            pytest.fail(
                f"{self.name} did not start listening (timeout {self.timeout}s, "
                f"exit code {rc}):\n$ {shlex.join(cmd)}\n{self.output()}",
                pytrace=False,
            )
        self.port = int(match.group(1))
        return self

    def stop(self) -> int | None:
        """SIGTERM, wait 10 s, then kill. Returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        rc = stop_process(self.proc)
        self._runs[-1].join()
        return rc

    def restart(self, *, keep_port: bool = False) -> Proxy:
        """Stop and start again with the same arguments, config file and cache directory."""
        self.stop()
        self._listen_port = self.port if keep_port else 0
        return self.start()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_for_output(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """Wait for a line of the current run matching ``pattern`` (a regex)."""
        match = self._runs[-1].wait_for(re.compile(pattern), timeout)
        if match is None:
            pytest.fail(f"no output matching {pattern!r} within {timeout}s:\n{self.output()}")
        return match

    def output(self) -> str:
        """All stdout+stderr captured so far, across restarts."""
        return "--- restarted ---\n".join(run.text() for run in self._runs)


class DevServersFactory(Protocol):
    def __call__(
        self, *, tls: bool = False, clients: dict[str, str] | None = None
    ) -> DevServersProcess: ...


class MitmdumpFactory(Protocol):
    def __call__(
        self,
        config_toml_text: str,
        *extra_args: str,
        cache_dir: Path | str | None = None,
        mode: str | None = None,
        upstream_ca: bool = True,
        lazy: bool = True,
    ) -> Proxy: ...
