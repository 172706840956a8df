"""Figure 8: token exchange (RFC 8693). Many callers, each with its own token: one exchange per
caller, and then a cache hit costs what one of the backend's own token costs."""

from __future__ import annotations

from .drive import require_ok
from .drive import run_job
from .figures_speed import add_pair
from .figures_speed import side_by_side_fresh
from .procs import BenchError
from .procs import Mitmdump
from .report import Figure
from .rig import Rig

MB = 1024 * 1024


def token_exchange(rig: Rig, exchanges: Figure, rate: Figure, cost: Figure, flood: Figure) -> None:
    """8. `exchange_callers` callers, `exchange_requests` requests each, in turn over the
    connections, through a fresh mitmdump whose backend exchanges each caller's token: the
    IdP's count of exchanges (8). Then such a mitmdump, every caller's token exchanged, side
    by side with one for the same backend with the client-credentials grant, both loaded with
    the same callers' tokens, a new pair for each run: throughput (8b) and CPU per request
    (8c), exchange / client credentials. 8d: `flood_callers` distinct callers, one request
    each, through a mitmdump that remembers `flood_limit` of them: its RSS growth once it
    remembers that many."""
    profile = rig.profile
    rig.idp.configure(expires_in=3600, delay=0)
    callers = rig.idp.issue_tokens(profile.exchange_callers)
    port = rig.protected[0]
    for run in range(profile.runs):
        before = rig.idp.exchanges()
        (exchanging,) = rig.mitmdumps(  # a cache of its own: nothing exchanged yet
            (f"exchange-{run}", [port], rig.config("api", port, grant="token_exchange"))
        )
        try:
            requests = profile.exchange_callers * profile.exchange_requests
            job = {"mode": "closed", "urls": [exchanging.url()], "connections": 16}
            job |= {"count": requests, "tokens": callers}
            result = run_job(job)
            require_ok(result["statuses"], "token exchange callers")
            if result["requests"] != requests:
                raise BenchError(f"{result['requests']} of {requests} requests answered")
            asked = rig.idp.exchanges() - before
            exchanges.add(
                asked,
                f"{profile.exchange_callers} callers x {profile.exchange_requests} requests: "
                f"{asked} exchanges",
            )
        finally:
            rig.stop(exchanging)

    def pair(run: int) -> list[Mitmdump]:
        dumps = rig.mitmdumps(  # caches of their own: the exchanging one exchanges anew
            (f"exchange-hits-{run}", [port], rig.config("api", port, grant="token_exchange")),
            (f"client-credentials-{run}", [port], rig.config("api", port)),
        )
        try:
            for dump in dumps:  # the same history: each has served every caller once
                job = {"mode": "closed", "urls": [dump.url()], "connections": 16}
                warm = run_job(job | {"count": len(callers), "tokens": callers})
                require_ok(warm["statuses"], "warm")
        except BaseException:
            rig.stop(*dumps)
            raise
        return dumps

    runs, pinned = side_by_side_fresh(rig, pair, tokens=callers)
    for e, p in runs:
        add_pair(rate, cost, e, p, "" if pinned else ", not pinned to one CPU")
    flood_of_callers(rig, flood)


def flood_of_callers(rig: Rig, figure: Figure) -> None:
    profile = rig.profile
    port = rig.protected[0]
    callers = rig.idp.issue_tokens(profile.flood_callers)
    full = 2 * profile.flood_limit  # remembered callers at the bound by then, some forgotten
    for run in range(profile.runs):
        config = rig.config(
            "api", port, grant="token_exchange", max_exchanged_tokens=profile.flood_limit
        )
        (dump,) = rig.mitmdumps((f"flood-{run}", [port], config))
        try:
            job = {"mode": "closed", "urls": [dump.url()], "connections": 16}
            require_ok(run_job(job | {"count": full, "tokens": callers[:full]})["statuses"], "full")
            before, asked = dump.rss(), rig.idp.exchanges()
            rest = callers[full:]
            result = run_job(job | {"count": len(rest), "tokens": rest}, timeout=1800)
            require_ok(result["statuses"], "flood")
            after, asked = dump.rss(), rig.idp.exchanges() - asked
        finally:
            rig.stop(dump)
        if asked != len(rest):
            raise BenchError(f"{asked} exchanges for {len(rest)} new callers")
        figure.add(
            (after - before) / MB,
            f"RSS {before / MB:.1f} -> {after / MB:.1f} MB over {len(rest)} more callers "
            f"({asked} exchanges), {profile.flood_limit} remembered",
        )
