"""Figures 1, 2, 6 and 7: what the addon costs a request when it has a token (against bare
mitmdump and against the floor, a one-hook script; with many backends; with a DPoP proof signed
for each request), and whether a slow token request holds up anything but the flows that need
it."""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass

from .drive import run_job
from .procs import FLOOR_SCRIPT
from .procs import BenchError
from .procs import Mitmdump
from .report import Figure
from .rig import Rig

DUMMY_DOMAIN = "bench.invalid"  # RFC 2606: never resolves, never matches a request here


@dataclass(frozen=True)
class Measured:
    """One mitmdump over one run: request rate, and its CPU time per request (s)."""

    rate: float
    cost: float

    def against(self, baseline: Measured) -> tuple[float, float, str]:
        """(rate ratio, cost ratio baseline / this) and the absolute numbers behind them."""
        rates = f"{self.rate:.0f} / {baseline.rate:.0f} req/s"
        costs = f"CPU per request {self.cost * 1000:.2f} / {baseline.cost * 1000:.2f} ms"
        return self.rate / baseline.rate, baseline.cost / self.cost, f"{rates}; {costs}"


def side_by_side(
    rig: Rig, *dumps: Mitmdump, tokens: Sequence[str] = ()
) -> tuple[list[list[Measured]], bool]:
    """Per run, all of `dumps` under load at once for `throughput_seconds`, sharing one CPU,
    each with its load client of its own: what the machine's speed does at any moment (a
    shared machine's varies by more than the figures measure, from one second to the next)
    it does to all of them. Each mitmdump is busy all the time, so the scheduler gives each
    an equal share of that CPU: the rates compare as the costs do. Also whether they could be
    pinned to one CPU (see `Rig.one_core`). `tokens`: callers' tokens the requests carry in
    turn."""
    rig.warm(*(dump.url() for dump in dumps), tokens=tokens)
    found = []
    with rig.one_core(*dumps) as pinned:
        for run in range(rig.profile.throughput_runs):
            found.append(_at_once(rig, dumps, run, tokens))
    return found, pinned


def side_by_side_fresh(
    rig: Rig, start: Callable[[int], Sequence[Mitmdump]], tokens: Sequence[str] = ()
) -> tuple[list[list[Measured]], bool]:
    """As `side_by_side`, with new processes for each run: `start(run)` starts them (ready and
    warm), and they are stopped after it. Two processes of the same program and configuration
    differ by a few percent, each for as long as it lives (where its objects landed in memory,
    its hash seed): compared once, a pair says as much of that as of the subjects."""
    found, pinned = [], True
    for run in range(rig.profile.throughput_runs):
        dumps = start(run)
        try:
            rig.warm(*(dump.url() for dump in dumps), tokens=tokens)
            with rig.one_core(*dumps) as pinned:
                found.append(_at_once(rig, dumps, run, tokens))
        finally:
            rig.stop(*dumps)
    return found, pinned


def _at_once(
    rig: Rig, dumps: Sequence[Mitmdump], run: int, tokens: Sequence[str]
) -> list[Measured]:
    """One run of `side_by_side`: every one of `dumps` loaded at once."""
    seconds = rig.profile.throughput_seconds
    before = [dump.cpu_seconds() for dump in dumps]
    # Started one after another: each run another one first, so that no subject of the
    # comparison always has the head start.
    first = run % len(dumps)
    order = [*range(first, len(dumps)), *range(first)]
    started = {i: rig.client.start(dumps[i].url(), seconds, tokens) for i in order}
    done = [started[i].result() for i in range(len(dumps))]
    used = [dump.cpu_seconds() - cpu for dump, cpu in zip(dumps, before, strict=True)]
    return [Measured(n / took, cpu / n) for (n, took), cpu in zip(done, used, strict=True)]


def add_pair(rate: Figure, cost: Figure, subject: Measured, baseline: Measured, note: str) -> None:
    """subject / baseline as a rate figure and as a CPU-per-request figure."""
    rates, costs, detail = subject.against(baseline)
    rate.add(rates, detail + note)
    cost.add(costs, detail + note)


def throughput(
    rig: Rig,
    cache_hit: tuple[Figure, Figure, Figure, Figure],
    many: tuple[Figure, Figure],
    dpop: tuple[Figure, Figure],
) -> None:
    """1. mitmdump with the addon and a valid token / bare mitmdump (1, 1c) and / the floor, a
    one-hook script that sets a constant bearer header (1f, 1fc), all three measured side by
    side, against the same backend process.
    6. The same addon request with N configured backends (the one used is last) / with 1.
    7. The same addon request to a DPoP backend (a proof signed for each) / to a bearer one."""
    rig.idp.configure(expires_in=3600, delay=0)
    port, count = rig.protected[0], rig.profile.many_backends
    real = rig.config("api", port)
    dummies = "".join(
        rig.idp.backend_toml(f"svc-{n:04d}", f"svc-{n:04d}.{DUMMY_DOMAIN}")
        for n in range(count - 1)
    )
    bare, floor, one, lots, bound = rig.mitmdumps(
        ("bare", [rig.open_port], None),
        ("floor", [port], FLOOR_SCRIPT),
        ("one", [port], real),
        ("many", [port], dummies + real),
        ("dpop", [port], rig.config("api", port, dpop=True)),
    )
    try:
        by_bare, by_bare_cpu, by_floor, by_floor_cpu = cache_hit
        runs, pinned = side_by_side(rig, bare, floor, one)
        where = "" if pinned else ", not pinned to one CPU"
        for b, f, o in runs:
            floor_rate, floor_cost, _ = f.against(b)
            note = f" (floor / bare {floor_rate:.2f}, CPU {floor_cost:.2f}{where})"
            add_pair(by_bare, by_bare_cpu, o, b, note)
            add_pair(by_floor, by_floor_cpu, o, f, where)
        runs, pinned = side_by_side(rig, one, lots)
        for o, lot in runs:
            add_pair(*many, lot, o, "" if pinned else ", not pinned to one CPU")
        runs, pinned = side_by_side(rig, one, bound)
        for o, d in runs:
            add_pair(*dpop, d, o, "" if pinned else ", not pinned to one CPU")
    finally:
        rig.stop(bare, floor, one, lots, bound)


def p99(records: list[list[float]], target: int) -> tuple[float, float]:
    """p99 and max latency (s) of one target's requests; every one must have succeeded."""
    latencies = sorted(r[2] for r in records if r[0] == target)
    failed = sum(1 for r in records if r[0] == target and not 200 <= r[3] < 300)
    if failed or not latencies:
        raise BenchError(f"target {target}: {failed} of {len(latencies)} requests failed")
    return latencies[max(0, round(0.99 * len(latencies)) - 1)], latencies[-1]


def head_of_line(rig: Rig, slow_figure: Figure, open_figure: Figure) -> None:
    """2. Open-loop load on three hosts at once: one whose token keeps renewing (a short
    max_token_age), one with a valid token, one unprotected. Windows with the IdP answering after
    `hol_idp_delay` s alternate with windows where it answers at once; per pair, the p99 of the
    second and third hosts, slow / fast."""
    profile = rig.profile
    renewing, steady = rig.protected
    config = rig.config("renewing", renewing, max_token_age=profile.hol_lifetime)
    config += rig.config("steady", steady)
    rig.idp.configure(expires_in=3600, delay=0)
    (dump,) = rig.mitmdumps(("hol", [renewing, steady, rig.open_port], config))
    try:
        rig.warm(dump.url(0), dump.url(1), dump.url(2))
        targets = [{"url": dump.url(i), "rate": profile.hol_rate} for i in range(3)]
        job = {"mode": "open", "targets": targets, "duration": profile.hol_seconds}
        for run in range(profile.runs):
            found: dict[bool, tuple[list[list[float]], int]] = {}
            for slow in (False, True) if run % 2 == 0 else (True, False):
                rig.idp.configure(delay=profile.hol_idp_delay if slow else 0)
                before = rig.idp.token_requests()
                records = run_job(job)["records"]
                found[slow] = (records, rig.idp.token_requests() - before)
                if slow:  # a slow renewal still running ends before the next window
                    time.sleep(profile.hol_idp_delay + 0.2)
            if found[True][1] == 0:
                raise BenchError("no token request during a slow-IdP window: nothing measured")
            for figure, target in ((slow_figure, 1), (open_figure, 2)):
                (fast_p99, fast_max), (slow_p99, slow_max) = (
                    p99(found[slow][0], target) for slow in (False, True)
                )
                figure.add(
                    slow_p99 / fast_p99,
                    f"p99 {slow_p99 * 1000:.1f} / {fast_p99 * 1000:.1f} ms, max "
                    f"{slow_max * 1000:.0f} / {fast_max * 1000:.0f} ms, "
                    f"{found[True][1]} slow token requests",
                )
    finally:
        rig.stop(dump)
