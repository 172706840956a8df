"""How long and how hard each figure is measured: the full run and the CI smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    runs: int  # per figure; each run has its own baseline
    connections: int  # throughput runs: keep-alive connections
    throughput_runs: int  # figures 1, 6, 7 and 8b: runs, each of all subjects at once
    throughput_seconds: float  # one such run
    many_backends: int  # figure 6: configured backends besides the one measured, plus it
    hol_seconds: float  # figure 2: one window of open-loop load
    hol_lifetime: int  # figure 2: max_token_age of the backend whose token keeps renewing
    hol_idp_delay: float  # figure 2: the slow IdP's answer time
    hol_rate: float  # figure 2: requests per second to each of the three hosts
    expiry_seconds: float  # figure 3: one run of open-loop load
    expiry_lifetime: int  # figure 3: expires_in
    expiry_idp_delay: float  # figure 3: the IdP's answer time
    expiry_rate: float  # figure 3: requests per second
    crowd_callers: int  # figure 4: concurrent callers
    # figure 4: expires_in; each run waits for the token to expire. Long enough that no caller
    # is answered after the token entered its renewal margin (that renewal is not the crowd's).
    crowd_lifetime: int
    crowd_idp_delay: float  # figure 4: so that every caller arrives while the token is fetched
    cache_fleet: int  # figure 4: mitmdumps sharing one cache directory
    redis_fleet: int  # figure 4: mitmdumps sharing one Redis
    memory_requests: int  # figure 5
    memory_warmup: int  # figure 5: requests before the first RSS reading
    memory_lifetime: int  # figure 5: expires_in
    exchange_callers: int  # figure 8: callers, each with a token of its own
    exchange_requests: int  # figure 8: requests per caller
    flood_callers: int  # figure 8d: distinct callers, one request each
    flood_limit: int  # figure 8d: max_exchanged_tokens


FULL = Profile(
    name="full",
    runs=3,
    connections=16,
    throughput_runs=7,
    throughput_seconds=10,
    many_backends=1000,
    hol_seconds=10,
    hol_lifetime=6,
    hol_idp_delay=2.0,
    hol_rate=40,
    expiry_seconds=20,
    expiry_lifetime=6,
    expiry_idp_delay=0.3,
    expiry_rate=100,
    crowd_callers=200,
    crowd_lifetime=10,
    crowd_idp_delay=0.5,
    cache_fleet=4,
    redis_fleet=3,
    memory_requests=100_000,
    memory_warmup=2_000,
    memory_lifetime=2,
    exchange_callers=1000,
    exchange_requests=20,
    flood_callers=6000,
    flood_limit=500,
)

SMOKE = Profile(
    name="smoke",
    runs=1,
    connections=8,
    throughput_runs=1,
    throughput_seconds=1,
    many_backends=100,
    hol_seconds=1.0,
    hol_lifetime=2,
    hol_idp_delay=0.5,
    hol_rate=50,
    expiry_seconds=3,
    expiry_lifetime=2,
    expiry_idp_delay=0.1,
    expiry_rate=50,
    crowd_callers=40,
    crowd_lifetime=10,
    crowd_idp_delay=0.2,
    cache_fleet=2,
    redis_fleet=2,
    memory_requests=300,
    memory_warmup=50,
    memory_lifetime=1,
    exchange_callers=50,
    exchange_requests=3,
    flood_callers=100,
    flood_limit=20,
)
