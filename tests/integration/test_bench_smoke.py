"""scripts/bench --smoke: the benchmark keeps working. Every figure is measured and written to
BENCHMARKS.md, and the latency plot is a PNG. Nothing here asserts speed: that is
what the benchmark itself reports, from a full run by hand."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

from tests.support.procs import subprocess_env

REPO = Path(__file__).resolve().parents[2]
FIGURES = (
    "1",
    "1c",
    "1f",
    "1fc",
    "2a",
    "2b",
    "3a",
    "3b",
    "4a",
    "4b",
    "4c",
    "4cs",
    "4cx",
    "5",
    "6",
    "6c",
    "7",
    "7c",
    "8",
    "8b",
    "8c",
    "8d",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def figure_rows(report: str) -> dict[str, list[str]]:
    """BENCHMARKS.md's figure table: key -> its cells."""
    rows = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in FIGURES:
            rows[cells[0]] = cells
    return rows


def test_smoke_run_writes_every_figure_and_the_plot(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(REPO / "scripts" / "bench"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(OAUTH2_VENV=sys.prefix),  # this interpreter's environment
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    rows = figure_rows((tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8"))
    assert sorted(rows) == sorted(FIGURES)
    for key, cells in rows.items():
        median, goal = cells[2], cells[4]
        assert re.fullmatch(r"\*\*\d+(\.\d+)?\*\*", median), (key, median)
        assert goal, key
        assert cells[5] in ("yes", "**no**"), (key, cells[5])

    png = (tmp_path / "latency.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
    assert width > 100
    assert height > 100
