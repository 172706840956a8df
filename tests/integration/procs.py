"""Child processes for the integration tests: their environment, their output, stopping them.

Child processes get the test's environment minus proxy variables, so nothing leaves 127.0.0.1.
Output is collected by a thread per stream and waited on with a timeout, never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
ADDON_DIR = REPO / "addon"
CURL = "/usr/bin/curl"
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment without proxy variables, with addon/ on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    paths = [str(ADDON_DIR), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


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


def popen(cmd: list[str], cwd: Path | None, stderr: int) -> subprocess.Popen[str]:
    """Start ``cmd`` in the test environment: text stdout piped, stderr as given, no stdin."""
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
