"""A fleet of real mitmdumps on a Redis that is more than one server: a primary with a replica
and three Sentinels, the primary SIGKILLed under load; a three-primary Cluster, the token's slot
moved to another node under load. No caller sees a failure, and afterwards the fleet is back to
one token request per renewal.

What the lock can and cannot do across a failover is counted, not hidden: replication is
asynchronous, so a lock (or a token) written to the old primary just before it died may be
lost; and while no primary answers, each proxy keeps its tokens in its own memory and renews on
its own. The token requests of that window are bounded by one per proxy and renewal, plus the
one a lost lock may cost.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TypeVar

import pytest

from tests.integration.test_redis_fleet import token_requests_while
from tests.support.devservers import DevServersProcess
from tests.support.fixtures import report_output
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory
from tests.support.redis_topologies import ClusterSet
from tests.support.redis_topologies import SentinelSet

LIFETIME = 4  # s: each token is renewed 2 s into its life (at most half, see tokens.policy)
RENEWAL = LIFETIME / 2
CLIENTS = 16
T = TypeVar("T", SentinelSet, ClusterSet)
TIMEOUT_S = 0.5  # oauth2_store_timeout's default


@contextlib.contextmanager
def running(request: pytest.FixtureRequest, topology: T) -> Iterator[T]:
    report_output(request, topology)
    try:  # also when it fails to start: what did start is stopped
        yield topology.start()
    finally:
        topology.stop()


@pytest.fixture
def sentinels(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelSet]:
    with running(request, SentinelSet(tmp_path / "sentinel")) as topology:
        yield topology


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClusterSet]:
    with running(request, ClusterSet(tmp_path / "cluster")) as topology:
        yield topology


@dataclass
class Load:
    """CLIENTS callers, each sending one request after another through the proxies in turn,
    until stopped: what each got, and when."""

    proxies: list[Proxy]
    url: str
    answers: list[tuple[float, float, int]] = field(default_factory=list)  # sent, took, status
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _caller(self, index: int) -> None:
        clients = [proxy.client(timeout=30) for proxy in self.proxies]
        try:
            turn = index
            while not self._stop.is_set():
                sent = time.monotonic()
                status = clients[turn % len(clients)].get(f"{self.url}/load").status_code
                self.answers.append((sent, time.monotonic() - sent, status))
                turn += 1
                self._stop.wait(0.1)  # paces the load; nothing is asserted on this timing
        finally:
            for client in clients:
                client.close()

    def __enter__(self) -> Load:
        for index in range(CLIENTS):
            thread = threading.Thread(target=self._caller, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def failed(self) -> list[tuple[float, float, int]]:
        return [answer for answer in self.answers if answer[2] != 200]


def fleet(mitmdump: ProxyFactory, devservers: DevServersProcess, url: str) -> list[Proxy]:
    toml = devservers.backend_toml("ledger")
    return [mitmdump(toml, "--set", f"oauth2_store={url}") for _ in range(3)]


def wait_until_shared_again(proxies: list[Proxy], seen: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(
        "is back: tokens are shared again" in proxy.output()[start:]
        or "keeping tokens in this process" not in proxy.output()[start:]
        for proxy, start in zip(proxies, seen, strict=True)
    ):
        assert time.monotonic() < deadline, "a proxy never went back to the store"
        time.sleep(0.2)


def test_the_primary_killed_under_load_fails_no_request_and_the_fleet_shares_again(
    devservers: DevServersProcess, mitmdump: ProxyFactory, sentinels: SentinelSet
) -> None:
    devservers.configure(expires_in=LIFETIME)
    proxies = fleet(mitmdump, devservers, sentinels.url)
    for proxy in proxies:
        assert f"tokens kept in the token store {sentinels.url}" in proxy.output()
    with Load(proxies, devservers.backend_url) as load:
        time.sleep(LIFETIME)  # the load runs: a renewal or two before the kill
        seen = [len(proxy.output()) for proxy in proxies]
        before = devservers.token_requests()
        killed_at = time.monotonic()
        old = sentinels.kill_primary()
        sentinels.wait_for_failover(old)
        failover = time.monotonic() - killed_at
        wait_until_shared_again(proxies, seen)
        outage = time.monotonic() - killed_at
        during = devservers.token_requests() - before
        after, elapsed, _ = token_requests_while(devservers, lambda: time.sleep(4 * LIFETIME))
    assert load.failed() == []
    assert len(load.answers) > CLIENTS * 10
    # Every request answered within the guard's timeout plus the failover, and more besides
    # (the whole outage, a token request, a loaded machine), never stalled without bound.
    assert max(took for _, took, _ in load.answers) < TIMEOUT_S + failover + LIFETIME
    # While the fleet had no primary: at most one renewal per proxy per renewal period, and the
    # one token request a lost lock may cost.
    assert during <= len(proxies) * (outage / RENEWAL + 1) + 1
    # Shared again: one token request per renewal for the whole fleet, not one per proxy.
    assert elapsed / LIFETIME <= after <= elapsed / RENEWAL + 1  # renewed, not expired
    for proxy in proxies:
        assert "Traceback" not in proxy.output()


def test_sentinels_and_servers_with_passwords_of_their_own(
    devservers: DevServersProcess,
    mitmdump: ProxyFactory,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topology = SentinelSet(
        tmp_path / "sentinel", password="data-pw-7c1d", sentinel_password="sentinel-pw-3e9a"
    )
    with running(request, topology):
        monkeypatch.setenv("FLEET_REDIS_PASSWORD", "data-pw-7c1d")
        monkeypatch.setenv("FLEET_SENTINEL_PASSWORD", "sentinel-pw-3e9a")
        toml = devservers.backend_toml("ledger")
        options = (
            *("--set", f"oauth2_store={topology.url}"),
            *("--set", "oauth2_store_password_env=FLEET_REDIS_PASSWORD"),
            *("--set", "oauth2_store_sentinel_password_env=FLEET_SENTINEL_PASSWORD"),
        )
        proxies = [mitmdump(toml, *options) for _ in range(3)]
        for proxy in proxies:
            with proxy.client(timeout=15) as client:
                assert client.get(f"{devservers.backend_url}/one").status_code == 200
        assert devservers.token_requests() == 1  # shared through the primary the Sentinels named
        (primary,) = [s for s in topology.servers if s.port == topology.primary_port()]
        with primary.client() as client:
            assert client.keys("mitm-oauth2:token/*")
        for proxy in proxies:
            assert "keeping tokens in this process" not in proxy.output()
            assert "data-pw-7c1d" not in proxy.output()
            assert "sentinel-pw-3e9a" not in proxy.output()


def slot_of(cluster: ClusterSet, pattern: str) -> tuple[bytes, int]:
    """The key matching `pattern`, wherever it is in the cluster, and its slot."""
    for server in cluster.servers:
        with server.client() as client:
            keys = client.keys(pattern)
            if keys:
                return keys[0], int(client.execute_command("CLUSTER", "KEYSLOT", keys[0]))
    raise AssertionError(f"no key {pattern} in the cluster")


def test_the_tokens_slot_moved_under_load_fails_no_request_and_stays_one_per_renewal(
    devservers: DevServersProcess, mitmdump: ProxyFactory, cluster: ClusterSet
) -> None:
    devservers.configure(expires_in=LIFETIME)
    proxies = fleet(mitmdump, devservers, cluster.url)
    with Load(proxies, devservers.backend_url) as load:
        time.sleep(RENEWAL)
        key, slot = slot_of(cluster, "mitm-oauth2:token/*")
        lock_name = key.replace(b"mitm-oauth2:token/", b"mitm-oauth2:lock/token/")
        with cluster.servers[0].client() as client:  # the lock goes where its token goes
            assert int(client.execute_command("CLUSTER", "KEYSLOT", lock_name)) == slot
        source = cluster.owner(slot)
        target = next(server for server in cluster.servers if server is not source)
        requests, elapsed, moved = token_requests_while(
            devservers, lambda: (cluster.migrate(slot, target), time.sleep(3 * LIFETIME))[0]
        )
    assert moved >= 1  # the token itself moved (and the lock, when it was held)
    assert cluster.owner(slot) is target
    assert load.failed() == []
    assert elapsed / LIFETIME <= requests <= elapsed / RENEWAL + 1
    with target.client() as client:
        assert client.exists(key)  # renewed since, where its slot is now
    for proxy in proxies:
        assert "keeping tokens in this process" not in proxy.output()
        assert "Traceback" not in proxy.output()
