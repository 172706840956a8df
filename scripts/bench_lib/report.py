"""What a benchmark run found: the figures, BENCHMARKS.md and the latency plot (PNG)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

from matplotlib import pyplot  # after use(): the backend must be chosen first
from matplotlib import ticker


@dataclass
class Figure:
    """One row of BENCHMARKS.md: a value per run, their median and whether it meets the goal."""

    key: str
    title: str
    goal: str
    meets: Callable[[float], bool]
    digits: int = 2  # decimals shown
    every_run: bool = False  # the goal must hold in every run, not only for the median
    runs: list[float] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # the absolute numbers behind each run
    missing: str | None = None  # why there is no value (a failure, or n/a)

    def add(self, value: float, detail: str) -> None:
        self.runs.append(value)
        self.details.append(detail)

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs and self.missing is None else None

    def show(self, value: float) -> str:
        # More digits where rounding would hide which side of the goal a value is on.
        digits = self.digits
        while digits < 4 and self.meets(round(value, digits)) != self.meets(value):
            digits += 1
        return f"{value:.{digits}f}"

    def cells(self) -> list[str]:
        median = self.median
        if median is None:
            return [self.key, self.title, self.missing or "no run", "", self.goal, ""]
        runs = ", ".join(self.show(v) for v in self.runs)
        ok = all(map(self.meets, self.runs)) if self.every_run else self.meets(median)
        met = "yes" if ok else "**no**"
        return [self.key, self.title, f"**{self.show(median)}**", runs, self.goal, met]


@dataclass(frozen=True)
class Context:
    """Where and how the figures were measured."""

    date: str
    machine: str
    python: str
    mitmproxy: str
    client: str
    runs: int
    throughput_runs: int
    mode: str
    seconds: float


def write_markdown(
    path: Path, figures: list[Figure], context: Context, method: list[str], plot: str
) -> None:
    header = ["#", "figure", "median", "runs", "goal", "met"]
    rows = [header, ["---"] * len(header), *(f.cells() for f in figures)]
    lines = [
        "# Benchmarks: the addon against bare mitmproxy and a one-hook script addon",
        "",
        f"Written by `scripts/bench` ({context.mode} run, {context.seconds / 60:.1f} min) on "
        f"{context.date}.",
        "",
        f"- Machine: {context.machine}",
        f"- Python {context.python}, mitmproxy {context.mitmproxy}",
        f"- Throughput load: {context.client}; latency load: bench_lib.load, open loop",
        f"- Each figure: the median of {context.runs} run(s) ({context.throughput_runs} for "
        "figures 1, 6, 7 and 8b); each run against a baseline measured in the same run, at the "
        "same time (1, 6, 7, 8b) or interleaved with it, so that the noise of a shared machine "
        "falls on both",
        "",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "## What each figure measures",
        "",
        *method,
        "",
        "## The numbers behind each run",
        "",
    ]
    for figure in figures:
        lines.append(f"- {figure.key}: " + ("; ".join(figure.details) or figure.missing or ""))
    lines += ["", "## Latency over time across token renewals", "", f"![latency]({plot})", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def plot_latency(
    path: Path, records: list[list[float]], fetches: list[float], fetch_seconds: float, title: str
) -> None:
    """Each request's latency against its scheduled start, token requests marked."""
    t0 = min([r[1] for r in records] + fetches)
    figure, axes = pyplot.subplots(figsize=(10, 4.2), dpi=110)
    times = [r[1] - t0 for r in records]
    axes.scatter(times, [r[2] * 1000 for r in records], s=4, alpha=0.5, label="request")
    for n, fetch in enumerate(fetches):
        start = fetch - t0
        label = "token request (arrival to answer)" if n == 0 else None
        axes.axvspan(
            start, start + max(fetch_seconds, 0.05), color="tab:red", alpha=0.25, label=label
        )
    axes.set_yscale("log")
    plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")  # 20, not 2 x 10^1
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
