"""The soak script's short run, as CI affords it: 1000 requests through the real mitmdump while
the authorization server fails on and off, no wrong answer. Its speed and memory figures are
printed, not asserted (they are measured by the full run, scripts/soak with no arguments)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.procs import REPO
from tests.support.procs import subprocess_env


def test_short_soak_gives_no_wrong_answer_and_reports_rss_and_fds() -> None:
    done = subprocess.run(
        [str(REPO / "scripts" / "soak"), "--requests", "1000"],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(OAUTH2_VENV=sys.prefix),  # this interpreter's environment
        check=False,
    )
    report = done.stdout
    assert done.returncode == 0, report + done.stderr
    assert re.search(r"^wrong answers: 0$", report, re.MULTILINE), report
    assert re.search(r"^statuses: .*200: \d+", report, re.MULTILINE), report
    assert re.search(r"^token requests: [1-9]", report, re.MULTILINE), report
    assert re.search(r"^mitmdump RSS: start [\d.]+ MiB, end [\d.]+ MiB$", report, re.MULTILINE)
    assert re.search(r"^mitmdump open fds: start \d+, end \d+$", report, re.MULTILINE)
