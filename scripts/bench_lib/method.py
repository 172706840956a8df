"""The benchmark's figures, their goals, and how each is measured (BENCHMARKS.md says it)."""

from __future__ import annotations

from .figures_tokens import WINDOW_AFTER
from .figures_tokens import WINDOW_BEFORE
from .report import Figure
from .settings import Profile

NOISE = 1.2  # a p99 ratio up to this is within a shared 2-core machine's noise


def make_figures(p: Profile) -> list[Figure]:
    crowd = f"Token requests per lifetime, {p.crowd_callers} concurrent callers"
    return [
        Figure(
            "1", "Throughput, addon on a cache hit / bare mitmdump", ">= 0.97", lambda v: v >= 0.97
        ),
        Figure(
            "1c",
            "The same as mitmdump CPU time per request, bare / addon",
            ">= 0.97",
            lambda v: v >= 0.97,
        ),
        Figure(
            "1f",
            "Throughput, addon on a cache hit / the floor (a one-hook script addon)",
            ">= 0.98",
            lambda v: v >= 0.98,
        ),
        Figure(
            "1fc",
            "The same as mitmdump CPU time per request, floor / addon",
            ">= 0.98",
            lambda v: v >= 0.98,
        ),
        Figure(
            "2a",
            f"p99 latency, backend with a valid token: IdP answering after "
            f"{p.hol_idp_delay:g} s / at once",
            f"no increase (<= {NOISE})",
            lambda v: v <= NOISE,
        ),
        Figure(
            "2b",
            "p99 latency, unprotected host: IdP slow / fast",
            f"no increase (<= {NOISE})",
            lambda v: v <= NOISE,
        ),
        Figure(
            "3a", "p50 latency near a token renewal / steady state", "<= 1.2", lambda v: v <= 1.2
        ),
        Figure(
            "3b", "p99 latency near a token renewal / steady state", "<= 1.2", lambda v: v <= 1.2
        ),
        Figure("4a", f"{crowd}, 1 process", "exactly 1", lambda v: v == 1, 0, True),
        Figure(
            "4b",
            f"{crowd}, {p.cache_fleet} processes on one cache dir",
            "exactly 1",
            lambda v: v == 1,
            0,
            True,
        ),
        Figure(
            "4c",
            f"{crowd}, {p.redis_fleet} processes on one Redis server",
            "exactly 1",
            lambda v: v == 1,
            0,
            True,
        ),
        Figure(
            "4cs",
            f"{crowd}, {p.redis_fleet} processes on Redis Sentinel (a primary, a replica)",
            "exactly 1",
            lambda v: v == 1,
            0,
            True,
        ),
        Figure(
            "4cx",
            f"{crowd}, {p.redis_fleet} processes on a Redis Cluster (3 primaries)",
            "exactly 1",
            lambda v: v == 1,
            0,
            True,
        ),
        Figure(
            "5",
            f"RSS growth of mitmdump over {p.memory_requests:,} requests, "
            f"{p.memory_lifetime} s tokens (MB)",
            "< 5",
            lambda v: v < 5,
            1,
        ),
        Figure(
            "6",
            f"Throughput, {p.many_backends:,} configured backends / 1",
            ">= 0.95",
            lambda v: v >= 0.95,
        ),
        Figure(
            "6c",
            f"The same as mitmdump CPU time per request, 1 / {p.many_backends:,} backends",
            ">= 0.95",
            lambda v: v >= 0.95,
        ),
        Figure(
            "7",
            "Throughput, a DPoP backend (a proof signed per request) / a bearer backend",
            ">= 0.90",
            lambda v: v >= 0.90,
        ),
        Figure(
            "7c",
            "The same as mitmdump CPU time per request, bearer / DPoP",
            ">= 0.90",
            lambda v: v >= 0.90,
        ),
        Figure(
            "8",
            f"Token exchanges for {p.exchange_callers:,} callers making "
            f"{p.exchange_requests} requests each",
            f"exactly {p.exchange_callers:,}",
            lambda v: v == p.exchange_callers,
            0,
            True,
        ),
        Figure(
            "8b",
            "Throughput on a cache hit, a caller's exchanged token / the client-credentials token",
            ">= 0.97",
            lambda v: v >= 0.97,
        ),
        Figure(
            "8c",
            "The same as mitmdump CPU time per request, client credentials / exchange",
            ">= 0.97",
            lambda v: v >= 0.97,
        ),
        Figure(
            "8d",
            f"RSS growth of mitmdump over a flood of {p.flood_callers - 2 * p.flood_limit:,} "
            f"distinct callers, {p.flood_limit} remembered (MB)",
            "< 5",
            lambda v: v < 5,
            1,
        ),
    ]


def describe(p: Profile) -> list[str]:
    window = f"[{WINDOW_BEFORE:g} s before a token request arrives, {WINDOW_AFTER:g} s after it"
    return [
        "Everything runs on 127.0.0.1: `bench_lib.backend` (an asyncio HTTP/1.1 server far "
        "faster than mitmdump; its protected ports answer 401 without a token, so a "
        "missing token shows up as an error, never as a fast answer), the dev authorization "
        "server `mitm_oauth2.devservers` (its `delay` and `expires_in` knobs script the IdP; "
        "token requests are counted from its stats), and mitmdump in reverse mode with "
        "`flow_detail=0` and `connection_strategy=lazy`. Load comes from another process. "
        "Every throughput and latency run must see only 2xx answers, or the figure fails.",
        "",
        f"1. Requests per second over {p.connections} keep-alive connections: mitmdump with the "
        "addon (token cached) / bare mitmdump (no script) in front of the same backend process. "
        "1f: the same addon runs / the floor, `bench_lib/script/floor.py`: a script addon with "
        "one hook, `request`, that sets a constant `Authorization: Bearer` header, the least "
        "any addon that does this job costs (mitmproxy runs every script through its hook "
        "dispatch). The three run side by side: in each of "
        f"{p.throughput_runs} runs of {p.throughput_seconds:g} s, each is loaded by its own "
        "client at the same time, the three mitmdumps pinned to one CPU and everything else "
        "(backend, IdP, load clients) to the others. A shared machine's speed changes by more "
        "than these figures measure from one second to the next; at the same time on the same "
        "CPU, each change falls on the three alike. Each mitmdump is busy all the time, so the "
        "scheduler gives each an equal share of the CPU and the rates compare as the costs do. "
        "1c and 1fc: the same runs as mitmdump's CPU time per request (user + system, from "
        "/proc), bare / addon and floor / addon. The details of 1 give the floor / bare of "
        "each run: what a script addon costs by itself. What the addon adds to that is judged "
        "by 1f and 1fc.",
        f"2. Open-loop load, {p.hol_rate:g} req/s to each of three hosts for "
        f"{p.hol_seconds:g} s: a backend whose token renews all the time (`max_token_age = "
        f"{p.hol_lifetime}`), a backend with a valid token, an unprotected host. Windows with "
        f"the IdP answering after {p.hol_idp_delay:g} s alternate with windows where it answers "
        "at once; the p99 of the second host (2a) and of the third (2b), slow / fast. Open loop: "
        "requests start on schedule whatever the proxy does, and latency counts from the "
        "scheduled start, so a stall delays every request behind it. Under 1: the slow windows "
        "happened to be quieter; the maxima in the details show whether any request waited "
        "for a slow token request.",
        f"3. Open-loop load, {p.expiry_rate:g} req/s for {p.expiry_seconds:g} s, tokens of "
        f"{p.expiry_lifetime} s (renewed ahead, half-way), the IdP answering in "
        f"{p.expiry_idp_delay:g} s. Near a renewal = scheduled within {window} was answered]; "
        "steady state = every other request of the same run.",
        f"4. {p.crowd_callers} callers connect, then send one request each at the same moment "
        f"while no valid token exists (tokens of {p.crowd_lifetime} s; each run waits until "
        f"they expired unused; the IdP answers in {p.crowd_idp_delay:g} s so that every caller "
        f"arrives during the fetch): to one mitmdump (4a), spread over {p.cache_fleet} mitmdumps "
        f"sharing one `oauth2_cache_dir` (4b), over {p.redis_fleet} sharing a Redis through "
        "`oauth2_store`: one server (4c), a primary and its replica behind three Sentinels "
        "(4cs, `redis+sentinel://`), a Cluster of three primaries (4cx, `redis+cluster://`). "
        "The count is the IdP's; the goal must hold in every run. "
        "The lifetime is long enough that every caller is answered before the token enters its "
        "renewal margin (a renewal then would be the next lifetime's token request).",
        f"5. A fresh mitmdump, {p.memory_warmup:,} warm-up requests, then resident set size "
        f"before and after {p.memory_requests:,} more requests over {p.connections} "
        f"connections with tokens of {p.memory_lifetime} s (renewed every "
        f"{p.memory_lifetime / 2:g} s).",
        f"6. As 1 and 1c, with {p.many_backends - 1:,} other `[[backend]]` tables (hosts under "
        "`bench.invalid`) before the one used / with that one only.",
        "7. As 1 and 1c, the same backend configured with `dpop = true` (the proxy's own P-256 "
        "key: every request gets `Authorization: DPoP` and an ES256 proof signed for it) / "
        "configured for bearer tokens, side by side. The backend's protected port takes a DPoP "
        "token only with a proof header (it does not verify it; the tests do).",
        f"8. {p.exchange_callers:,} callers, each with a token of its own from the IdP, "
        f"{p.exchange_requests} requests each in turn over 16 connections (`bench_lib.load`), "
        "through a fresh mitmdump (a cache of its own) whose backend has `grant = "
        '"token_exchange"`: the IdP\'s count of exchanges, which must be one per caller in '
        "every run. 8b and 8c: as 1 and 1c, such a mitmdump with every caller's token "
        "exchanged / one for the same backend with the client-credentials grant, side by side, "
        "each having served every caller once before, both loaded with the same callers' "
        "tokens in turn (wrk: a Lua script), so the exchange path's cost on a cache hit (the "
        "caller's token read, a keyed digest of it, its grant looked up) is what is compared; "
        "a new pair for each run, as two processes of one configuration differ by a few "
        "percent for as long as they live (where their objects landed, their hash seeds). 8d: a "
        "fresh mitmdump with `max_exchanged_tokens = "
        f"{p.flood_limit}`; {2 * p.flood_limit:,} callers, then its resident set size before "
        f"and after {p.flood_callers - 2 * p.flood_limit:,} more, every one a caller it has not "
        "seen (one request each, each exchanged once): what a flood of distinct tokens costs "
        "in memory once the bound holds.",
    ]
