"""Figures 3, 4 and 5: latency at the token expiry boundary, token requests per lifetime, and
memory over many short-lived tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.programs import MissingProgram
from tests.support.redis_topologies import ClusterSet
from tests.support.redis_topologies import SentinelSet

from .drive import require_ok
from .drive import run_job
from .procs import BenchError
from .procs import Redis
from .report import Figure
from .rig import Rig

MB = 2**20
WINDOW_BEFORE = 0.25  # s: the expiry window starts this long before a token request arrives
WINDOW_AFTER = 0.25  # s: ... and ends this long after it was answered


@dataclass(frozen=True)
class Timeline:
    """One run of open-loop load: its requests and when the IdP received token requests."""

    records: list[list[float]]
    fetches: list[float]
    fetch_seconds: float


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered)) - 1)]


def expiry_boundary(rig: Rig, p50_figure: Figure, p99_figure: Figure) -> Timeline:
    """3. Open-loop load through several token lifetimes; latency of requests scheduled near a
    token request / of all others. Returns the run whose p99 ratio is the median, to plot."""
    profile = rig.profile
    delay, port = profile.expiry_idp_delay, rig.protected[0]
    rig.idp.configure(expires_in=profile.expiry_lifetime, delay=delay)
    (dump,) = rig.mitmdumps(("expiry", [port], rig.config("api", port)))
    target = {"url": dump.url(), "rate": profile.expiry_rate}
    job = {"mode": "open", "targets": [target], "duration": profile.expiry_seconds}
    timelines: list[tuple[float, Timeline]] = []
    try:
        rig.warm(dump.url())
        for _ in range(profile.runs):
            records = run_job(job)["records"]
            require_ok({str(int(r[3])): 1 for r in records}, "expiry boundary")
            first, last = records[0][1], records[-1][1]
            fetches = [t for t in rig.idp.token_request_times() if first - delay <= t <= last]
            if len(fetches) < 2:
                raise BenchError(
                    f"{len(fetches)} token request(s) during the run: lifetime too long"
                )
            windows = [(t - WINDOW_BEFORE, t + delay + WINDOW_AFTER) for t in fetches]
            near: list[float] = []
            steady: list[float] = []
            for record in records:
                inside = any(start <= record[1] <= end for start, end in windows)
                (near if inside else steady).append(record[2])
            ratios = [quantile(near, q) / quantile(steady, q) for q in (0.5, 0.99)]
            detail = (
                f"{len(fetches)} renewals; near/steady p50 {quantile(near, 0.5) * 1000:.1f} / "
                f"{quantile(steady, 0.5) * 1000:.1f} ms, p99 {quantile(near, 0.99) * 1000:.1f}"
                f" / {quantile(steady, 0.99) * 1000:.1f} ms ({len(near)} / {len(steady)} requests)"
            )
            p50_figure.add(ratios[0], detail)
            p99_figure.add(ratios[1], detail)
            timelines.append((ratios[1], Timeline(records, fetches, delay)))
    finally:
        rig.stop(dump)
    timelines.sort(key=lambda pair: pair[0])
    return timelines[len(timelines) // 2][1]


def token_requests_per_lifetime(rig: Rig, figures: tuple[Figure, ...]) -> None:
    """4. A crowd of callers at once, with no valid token anywhere: on one mitmdump, spread
    over `cache_fleet` sharing a cache directory, and over `redis_fleet` sharing a Redis: one
    server, a primary and replica behind three Sentinels, a Cluster of three primaries. Each run
    waits until every token expired unused, so each crowd starts cold: the token requests it
    causes are those of one lifetime."""
    profile = rig.profile
    port, callers = rig.protected[0], profile.crowd_callers
    rig.idp.configure(expires_in=profile.crowd_lifetime, delay=profile.crowd_idp_delay)
    config = rig.config("api", port)
    work = rig.workdir
    groups = [[rig.mitmdump("crowd", [port], config, cache=work / "cache-crowd")]]
    groups.append(
        [
            rig.mitmdump(f"fleet-{n}", [port], config, cache=work / "cache-fleet")
            for n in range(profile.cache_fleet)
        ]
    )
    # Each is stopped with the rig's processes, also when it fails to start.
    topologies: list[tuple[str, Callable[[], Redis | SentinelSet | ClusterSet]]] = [
        ("redis", lambda: rig.procs.add(Redis())),
        ("sentinel", lambda: rig.procs.add(SentinelSet(work / "sentinel")).start()),
        ("cluster", lambda: rig.procs.add(ClusterSet(work / "cluster")).start()),
    ]
    measured = list(figures[:2])
    for (name, start), figure in zip(topologies, figures[2:], strict=True):
        try:
            redis = start()
        except MissingProgram as e:  # a failed figure (bench exits 1), not an n/a: say why
            figure.missing = f"failed: {str(e)[:120]}"
            continue
        store = ("--set", f"oauth2_store={redis.url}")
        groups.append(
            [
                rig.mitmdump(f"{name}-{n}", [port], config, *store, cache=work / f"c-{name}{n}")
                for n in range(profile.redis_fleet)
            ]
        )
        measured.append(figure)
    dumps = [dump for group in groups for dump in group]
    try:
        for dump in dumps:
            dump.ready()
        for run in range(profile.runs):
            if run:
                time.sleep(profile.crowd_lifetime + 0.5)
            for figure, group in zip(measured, groups, strict=True):
                before = rig.idp.token_requests()
                job = {"mode": "crowd", "urls": [d.url() for d in group], "callers": callers}
                result = run_job(job, timeout=120)
                require_ok(result["statuses"], figure.title)
                count = rig.idp.token_requests() - before
                figure.add(
                    count,
                    f"{callers} callers on {len(group)} process(es): {count} token request(s), "
                    f"all answered within {result['max_ms']:.0f} ms",
                )
    finally:
        rig.stop(*dumps)


def memory_growth(rig: Rig, figure: Figure) -> None:
    """5. RSS of a fresh mitmdump after a warm-up, and after `memory_requests` more requests
    with tokens of `memory_lifetime` seconds."""
    profile = rig.profile
    port = rig.protected[0]
    rig.idp.configure(expires_in=profile.memory_lifetime, delay=0)
    for run in range(profile.runs):
        (dump,) = rig.mitmdumps((f"memory-{run}", [port], rig.config("api", port)))
        try:
            job = {"mode": "closed", "urls": [dump.url()], "connections": profile.connections}
            require_ok(run_job({**job, "count": profile.memory_warmup})["statuses"], "warm-up")
            before, tokens = dump.rss(), rig.idp.token_requests()
            result = run_job({**job, "count": profile.memory_requests}, timeout=1800)
            require_ok(result["statuses"], "memory")
            after, tokens = dump.rss(), rig.idp.token_requests() - tokens
        finally:
            rig.stop(dump)
        figure.add(
            (after - before) / MB,
            f"RSS {before / MB:.1f} -> {after / MB:.1f} MB over {result['requests']} requests "
            f"at {result['rps']:.0f} req/s, {tokens} token requests",
        )
