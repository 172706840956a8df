"""mitmdump with the addon loaded, as a child process on 127.0.0.1: its arguments, a run to
completion (startup errors), and `Proxy`, a running instance with clients that go through it.

`Proxy` runs `mitm_oauth2.testing.ProxyProcess`, the package's own harness, with the script users
load from a checkout, addon/oauth2_backend.py (the pytest plugin's tests cover the packaged one).
"""

from __future__ import annotations

import re
import shlex
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any
from typing import Protocol

import httpx
import pytest
from procs import ADDON_DIR
from procs import subprocess_env

from mitm_oauth2.testing import LISTENING as LISTENING  # re-exported for mitmweb.py
from mitm_oauth2.testing import ProxyNotReady
from mitm_oauth2.testing import ProxyProcess

ADDON_SCRIPT = ADDON_DIR / "oauth2_backend.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"


def create_ca(confdir: Path) -> Path:
    """mitmproxy's CA made in `confdir` now: proxies sharing the confdir never race for it."""
    try:
        from mitmproxy.certs import CertStore

        CertStore.from_store(confdir, "mitmproxy", 2048)
    except ImportError:  # pragma: no cover - mitmdump creates it on first start instead
        pass
    return confdir


def harness_options(*, upstream_ca: Path | None, lazy: bool, mode: str | None) -> list[str]:
    """The tests' mitmdump options besides the addon's own (confdir, config, cache, -s)."""
    args: list[str] = []
    if upstream_ca is not None:
        args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    if lazy:
        args += ["--set", "connection_strategy=lazy"]
    if mode is not None:
        args += ["--mode", mode]
    return args


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
    args += harness_options(upstream_ca=upstream_ca, lazy=lazy, mode=mode)
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
    """A mitmdump child process with the addon loaded, listening on 127.0.0.1; restartable
    (each run is a `ProxyProcess`)."""

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
        """``args``: mitmdump arguments besides confdir, config, cache dir and the script."""
        self.args = args
        self.confdir = confdir
        self.config_path = config_path
        self.cache_dir = cache_dir
        self.name = name
        self.timeout = timeout
        self._cwd = cwd
        self._runs: list[ProxyProcess] = []
        self._listen_port = 0

    @property
    def port(self) -> int:
        return self._runs[-1].port if self._runs else 0

    @property
    def proc(self) -> subprocess.Popen[str] | None:
        return self._runs[-1].proc if self._runs else None

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
        run = ProxyProcess(
            self.config_path,
            *self.args,
            confdir=self.confdir,
            cache_dir=self.cache_dir,
            listen_port=self._listen_port,
            mitmdump=MITMDUMP,
            script=ADDON_SCRIPT,
            env=subprocess_env(),
            cwd=self._cwd,
            timeout=self.timeout,
            name=self.name,
        )
        self._runs.append(run)
        try:
            run.start()
        except ProxyNotReady as e:
            pytest.fail(str(e), pytrace=False)
        return self

    def stop(self) -> int | None:
        """SIGTERM, wait 10 s, then kill. Returns the exit code (None if never started)."""
        return self._runs[-1].stop() if self._runs else None

    def restart(self, *, keep_port: bool = False) -> Proxy:
        """Stop and start again with the same arguments, config file and cache directory."""
        self.stop()
        self._listen_port = self.port if keep_port else 0
        return self.start()

    @property
    def returncode(self) -> int | None:
        return self._runs[-1].returncode if self._runs else None

    def wait_for_output(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """Wait for a line of the current run matching ``pattern`` (a regex)."""
        try:
            return self._runs[-1].wait_for_output(pattern, timeout)
        except TimeoutError:
            pytest.fail(f"no output matching {pattern!r} within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """All stdout+stderr captured so far, across restarts."""
        return "--- restarted ---\n".join(run.output() for run in self._runs)


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
