"""The command line: runs every figure, writes BENCHMARKS.md and latency.png, prints the table."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from pathlib import Path

import mitmproxy.version
import psutil

from . import __doc__ as DESCRIPTION
from .drive import Client
from .figures_exchange import token_exchange
from .figures_speed import head_of_line
from .figures_speed import throughput
from .figures_tokens import Timeline
from .figures_tokens import expiry_boundary
from .figures_tokens import memory_growth
from .figures_tokens import token_requests_per_lifetime
from .method import describe
from .method import make_figures
from .procs import SCRIPTS_DIR
from .procs import BenchError
from .procs import Processes
from .report import Context
from .report import Figure
from .report import plot_latency
from .report import write_markdown
from .rig import Rig
from .settings import FULL
from .settings import SMOKE
from .settings import Profile

PLOT = "latency.png"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB, {platform.platform()}; load {load}"


def on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C: every child is stopped


def run(
    profile: Profile, client: Client, figures: dict[str, Figure], only: set[str]
) -> Timeline | None:
    """Every figure in turn; one that fails is marked failed and the others still run."""
    timeline: list[Timeline] = []
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="oauth2-bench-") as tmp:
        try:
            rig = Rig.start(profile, client, procs, Path(tmp))
            f = figures
            steps: list[tuple[list[str], Callable[[], object]]] = [
                (
                    ["1", "1c", "1f", "1fc", "6", "6c", "7", "7c"],
                    lambda: throughput(
                        rig,
                        (f["1"], f["1c"], f["1f"], f["1fc"]),
                        (f["6"], f["6c"]),
                        (f["7"], f["7c"]),
                    ),
                ),
                (["2a", "2b"], lambda: head_of_line(rig, f["2a"], f["2b"])),
                (["3a", "3b"], lambda: timeline.append(expiry_boundary(rig, f["3a"], f["3b"]))),
                (
                    ["4a", "4b", "4c", "4cs", "4cx"],
                    lambda: token_requests_per_lifetime(
                        rig, (f["4a"], f["4b"], f["4c"], f["4cs"], f["4cx"])
                    ),
                ),
                (["5"], lambda: memory_growth(rig, f["5"])),
                (
                    ["8", "8b", "8c", "8d"],
                    lambda: token_exchange(rig, f["8"], f["8b"], f["8c"], f["8d"]),
                ),
            ]
            for keys, step in steps:
                if only and not only & set(keys):
                    continue
                print(f"bench: figure {', '.join(keys)} ...", file=sys.stderr, flush=True)
                began = time.monotonic()
                try:
                    step()
                    took = time.monotonic() - began
                    print(f"bench: figure {', '.join(keys)}: {took:.1f} s", file=sys.stderr)
                except BenchError as e:
                    print(f"bench: figure {', '.join(keys)} failed: {e}", file=sys.stderr)
                    for key in keys:
                        f[key].missing = f"failed: {str(e).splitlines()[0][:120]}"
        finally:
            procs.stop_all()
    return timeline[0] if timeline else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=DESCRIPTION)
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes: for CI")
    parser.add_argument(
        "--out",
        type=Path,
        default=SCRIPTS_DIR / "benchmarks",
        help="folder for BENCHMARKS.md and latency.png",
    )
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        help="throughput load (default: wrk if installed, else python; python with --smoke)",
    )
    parser.add_argument(
        "--runs", type=int, help="runs per figure (default: 3, figures 1, 6, 7 and 8b: 7; smoke: 1)"
    )
    parser.add_argument("--only", default="", help="these figures only, e.g. 1,4b (and their step)")
    args = parser.parse_args(argv)
    profile = SMOKE if args.smoke else FULL
    if args.runs is not None:
        runs = max(1, args.runs)
        profile = dataclasses.replace(profile, runs=runs, throughput_runs=runs)
    client = Client.choose(args.client or ("python" if args.smoke else "auto"), profile.connections)
    signal.signal(signal.SIGTERM, on_sigterm)
    figures = {figure.key: figure for figure in make_figures(profile)}
    context = dict(date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), machine=machine())
    began = time.monotonic()
    only = {key.strip() for key in args.only.split(",") if key.strip()}
    try:
        timeline = run(profile, client, figures, only)
    except KeyboardInterrupt:  # every child was stopped on the way out
        print("bench: interrupted, nothing written", file=sys.stderr)
        return 130
    args.out.mkdir(parents=True, exist_ok=True)
    if timeline is not None:
        title = (
            f"mitmdump + addon, {profile.expiry_rate:g} req/s open loop; tokens of "
            f"{profile.expiry_lifetime} s, renewed ahead; IdP answers in "
            f"{profile.expiry_idp_delay:g} s"
        )
        plot_latency(
            args.out / PLOT, timeline.records, timeline.fetches, timeline.fetch_seconds, title
        )
    done = Context(
        **context,
        python=platform.python_version(),
        mitmproxy=mitmproxy.version.VERSION,
        client=client.describe(),
        runs=profile.runs,
        throughput_runs=profile.throughput_runs,
        mode=profile.name,
        seconds=time.monotonic() - began,
    )
    rows = list(figures.values())
    write_markdown(args.out / "BENCHMARKS.md", rows, done, describe(profile), PLOT)
    for figure in rows:
        print(" | ".join(figure.cells()))
    print(f"bench: wrote {args.out / 'BENCHMARKS.md'}", file=sys.stderr)
    failed = [figure.key for figure in rows if (figure.missing or "").startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
