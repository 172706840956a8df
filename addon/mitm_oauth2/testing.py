"""Run the real mitmdump with this addon from Python: for test suites and scripts.

    from pathlib import Path
    from mitm_oauth2.testing import ProxyProcess

    with ProxyProcess(Path("backends.toml"), confdir=Path("certs")) as proxy:
        # clients use proxy.url as their proxy and trust proxy.ca_cert
        ...

The pytest plugin (``mitm_oauth2.pytest_plugin``, fixture ``oauth2_proxy``) is built on this.
Only the standard library (and the addon's error base) is imported here: mitmproxy runs in the
child process.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO
from typing import Final
from typing import Self

from .model.errors import OAuth2Error

StrPath = str | os.PathLike[str]

# The mitmproxy script inside the installed package, for ``mitmdump -s``: no checkout needed.
ADDON_SCRIPT: Final = Path(__file__).parent / "script" / "oauth2_backend.py"
# "HTTP(S) proxy listening at 127.0.0.1:N." or "reverse proxy to URL listening at 127.0.0.1:N."
LISTENING: Final = re.compile(r"listening at .*:(\d+)\.?\s*$")
# mitmproxy's line for a script that failed to load or configure: fatal during startup.
STARTUP_ERROR: Final = re.compile(r"^(\[[^]]*\] ?)*error in script ", re.MULTILINE)
CA_CERT_NAME: Final = "mitmproxy-ca-cert.pem"


class ProxyNotReady(OAuth2Error):
    """mitmdump exited, or did not start listening in time; the message has its output."""


def find_mitmdump() -> Path:
    """The mitmdump beside this interpreter (its virtual environment), else the one on PATH."""
    beside = shutil.which("mitmdump", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("mitmdump")
    if found is None:
        raise FileNotFoundError("mitmdump is neither beside sys.executable nor on PATH")
    return Path(found)


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


# Registered services crowd the ports below 10000. Where the kernel's ephemeral range cannot be
# read, Linux's default is assumed (macOS's starts at 49152, above every port picked then).
_PORTS_START: Final = 10000
_DEFAULT_EPHEMERAL: Final = (32768, 60999)
_ROOM: Final = 1000  # fewer ports than this outside the ephemeral range: take the kernel's pick
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that is free now, for a server that must be told its port (one
    that takes port 0 and reports the one it got is better: no other process can take that).

    The port is outside the kernel's ephemeral range, where every outgoing connection takes its
    local port: a port from that range (as ``bind(port 0)`` gives) can be taken by a client's
    connection between now and the server's start. Only where that range leaves fewer than
    1,000 ports above 10000 is the kernel's pick taken. None is handed out twice by one process.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports = _outside_ephemeral()
    for _ in range(200 if ports else 20):
        port = random.choice(ports) if ports else 0  # noqa: S311 (a port, not a secret)
        with socket.socket(family) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port in _handed_out:
            continue
        _handed_out.add(port)
        return port
    where = "the kernel's picks" if ports is None else f"{ports.start}-{ports[-1]}"
    raise OSError(f"no free TCP port on {host} in {where}")


def _outside_ephemeral() -> range | None:
    """The longer run of ports from 10000 up that the ephemeral range leaves out, or None when
    it leaves too few."""
    low, high = _ephemeral_range()
    below, above = range(_PORTS_START, low), range(high + 1, 65536)
    longer = max(below, above, key=len)
    return longer if len(longer) >= _ROOM else None


def _ephemeral_range() -> tuple[int, int]:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        low, high = (int(field) for field in text.split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


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


class ProxyProcess:
    """mitmdump with the addon as a child process, listening on 127.0.0.1.

    ``config`` is the TOML text of the ``[[backend]]`` tables (a ``str``) or the path of a file
    holding it (a ``pathlib.Path``). ``extra_args`` go to mitmdump after the options set here,
    so a ``--set`` there overrides them. What is not given is made in ``workdir``, by default a
    temporary directory that ``stop()`` deletes: the config file (from text), ``confdir``
    (mitmproxy's CA, made on the first start in it) and ``cache_dir`` (the token cache). Relative
    paths are taken from the current directory, not ``cwd``. ``listen_port=0`` lets the
    kernel pick a free port; ``port`` says which once ``start()`` returns. ``env`` replaces
    ``os.environ`` for the child. ``mitmdump`` is the program to run: mitmdump by default,
    mitmweb, or a wrapper that takes mitmdump's arguments; ``script=None`` when that wrapper
    loads the addon itself. ``restart()`` stops the process and starts it again on the same
    files; ``stop()`` ends it for good.
    """

    def __init__(
        self,
        config: StrPath,
        *extra_args: str,
        confdir: StrPath | None = None,
        cache_dir: StrPath | None = None,
        workdir: StrPath | None = None,
        listen_port: int = 0,
        mitmdump: StrPath | None = None,
        script: StrPath | None = ADDON_SCRIPT,
        env: Mapping[str, str] | None = None,
        cwd: StrPath | None = None,
        timeout: float = 30,
        name: str = "mitmdump",
    ) -> None:
        self.name = name
        self.timeout = timeout
        executable = str(mitmdump) if mitmdump else str(find_mitmdump())  # before any mkdir
        self._workdir = Path(workdir).absolute() if workdir else None
        self._tmp: Path | None = None  # the temporary directory this instance made, if any
        if isinstance(config, str):
            if config.strip().endswith(".toml") and "\n" not in config.strip():
                raise TypeError(f"{config!r} looks like a file name: pass a pathlib.Path")
            self.config_path = self._dir() / "backends.toml"
            self.config_path.write_text(config, encoding="utf-8")
        else:
            self.config_path = Path(config).absolute()
        self.confdir = Path(confdir).absolute() if confdir else self._dir() / "confdir"
        self.cache_dir = Path(cache_dir).absolute() if cache_dir else self._dir() / "cache"
        self._executable = executable
        self._options = [
            *("--set", f"confdir={self.confdir}"),
            *("--set", f"oauth2_config={self.config_path}"),
            *("--set", f"oauth2_cache_dir={self.cache_dir}"),
            *(("-s", str(script)) if script is not None else ()),
            *extra_args,
        ]
        self.command = self._command(listen_port)
        self._env = dict(os.environ if env is None else env)
        self._env["PYTHONUNBUFFERED"] = "1"  # log lines arrive as they happen, not at exit
        self._env.setdefault("PYTHONIOENCODING", "utf-8")
        self._cwd = cwd
        self._output: OutputReader | None = None
        self._earlier = ""  # the output of the runs before a restart
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def _command(self, listen_port: int) -> list[str]:
        listen = ("--listen-host", "127.0.0.1", "--listen-port", str(listen_port))
        return [self._executable, *listen, *self._options]

    def _dir(self) -> Path:
        if self._workdir is not None:
            self._workdir.mkdir(parents=True, exist_ok=True)
            return self._workdir
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="mitm-oauth2-"))
        return self._tmp

    def start(self) -> Self:
        """Start mitmdump and wait until it listens. Raises ProxyNotReady (it is stopped)."""
        if self.proc is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=self._env,
            cwd=self._cwd,
        )
        assert self.proc.stdout is not None
        self._output = OutputReader(self.proc.stdout, f"{self.name}-output")
        match = self._output.wait_for(LISTENING, self.timeout)
        if match is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(1)  # the output ended: it has exited, or is about to
            if self.proc.poll() is None:
                problem = f"did not start listening (timeout {self.timeout}s, exit code"
            else:  # a bad option or configuration stops it before it listens
                problem = "exited at start-up (exit code"
        elif STARTUP_ERROR.search(self._output.text()):
            # The script failed (a bad config): mitmdump listens, then exits at once.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(self.timeout)
            problem = "logged an error at startup (exit code"
        else:
            self.port = int(match.group(1))
            return self
        rc = self.stop()
        raise ProxyNotReady(
            f"{self.name} {problem} {rc}):\n$ {shlex.join(self.command)}\n{self.output()}"
        )

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; deletes the temporary directory.
        Returns the exit code (None if never started). Safe to call more than once."""
        rc = self._end(timeout)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return rc

    def _end(self, timeout: float) -> int | None:
        rc = None
        if self.proc is not None:
            rc = stop_process(self.proc, timeout)
        if self._output is not None:
            self._output.join()
        return rc

    def restart(self, *, keep_port: bool = False, timeout: float = 10) -> Self:
        """Stop mitmdump (as ``stop()`` does) and start it again with the same command line:
        the same config file, confdir and token cache (what a restart of a deployed proxy
        keeps). ``keep_port`` listens on the same port again, else on a new free one.
        ``output()`` keeps the output of the earlier runs. Raises ProxyNotReady as ``start()``."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        self._end(timeout)
        self._earlier = f"{self.output()}--- restarted ---\n"
        self.command = self._command(self.port if keep_port else 0)
        self.proc, self._output, self.port = None, None, 0
        return self.start()

    def __enter__(self) -> Self:
        return self if self.proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The proxy URL for clients: ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        """mitmproxy's CA certificate (PEM): clients trust it to talk TLS through the proxy."""
        return self.confdir / CA_CERT_NAME

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts ``ca_cert`` only (httpx: ``verify=``)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def client_env(self) -> dict[str, str]:
        """Environment variables that send a child client (curl, Python, Node) through the
        proxy and make it trust ``ca_cert``. Merge into an environment without ``NO_PROXY``."""
        ca = str(self.ca_cert)
        env = {name: self.url for name in ("HTTP_PROXY", "HTTPS_PROXY")}
        env |= {name.lower(): self.url for name in env}  # curl reads only http_proxy lower-case
        names = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
        return env | dict.fromkeys(names, ca)

    @property
    def returncode(self) -> int | None:
        """None while running (or before start), else the exit code."""
        return None if self.proc is None else self.proc.poll()

    def output(self) -> str:
        """mitmdump's stdout and stderr so far (every run's, after a restart)."""
        return self._earlier + ("" if self._output is None else self._output.text())

    def wait_for_output(self, pattern: str | re.Pattern[str], timeout: float = 10) -> re.Match[str]:
        """The first line of output of the current run matching ``pattern`` (a regex);
        TimeoutError if none arrives within ``timeout`` s or mitmdump exits first."""
        regex = re.compile(pattern)
        match = None if self._output is None else self._output.wait_for(regex, timeout)
        if match is None:
            raise TimeoutError(
                f"no output matching {regex.pattern!r} within {timeout}s:\n{self.output()}"
            )
        return match
