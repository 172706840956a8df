"""A fleet of real mitmdump processes, each with its own disk cache, sharing tokens on a real
redis-server: one token request per lifetime, and no failed request while Redis dies or hangs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.test_lifecycle import crowd
from tests.integration.test_lifecycle import kill_while_asking_for_a_token
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory
from tests.support.redis_server import RedisServer


def fleet(
    mitmdump: ProxyFactory, devservers: DevServersProcess, redis: RedisServer, *extra: str
) -> list[Proxy]:
    """Three proxies on one Redis, each with a disk cache of its own (the default one)."""
    toml = devservers.backend_toml("ledger")
    return [mitmdump(toml, "--set", f"oauth2_store={redis.url}", *extra) for _ in range(3)]


def drive(proxies: list[Proxy], url: str, seconds: float) -> list[int]:
    """Requests through every proxy in turn for `seconds`: the statuses callers got."""
    statuses: list[int] = []
    clients = [proxy.client(timeout=15) for proxy in proxies]
    try:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for client in clients:
                statuses.append(client.get(f"{url}/tick").status_code)
            time.sleep(0.1)  # paces the load; the assertions are on counts, not on timing
    finally:
        for client in clients:
            client.close()
    return statuses


def token_requests_while(devservers: DevServersProcess, action) -> tuple[int, float, object]:
    """(token requests during `action`, its duration in seconds, its result)."""
    before, started = devservers.token_requests(), time.monotonic()
    result = action()
    return devservers.token_requests() - before, time.monotonic() - started, result


@pytest.mark.anyio
async def test_three_proxies_at_cold_start_make_one_token_request(
    devservers: DevServersProcess, mitmdump: ProxyFactory, redis_server: RedisServer
) -> None:
    devservers.configure(delay=0.5)
    proxies = fleet(mitmdump, devservers, redis_server)
    statuses = await crowd(proxies, devservers.backend_url, 40)
    assert statuses == [200] * 120
    assert devservers.token_requests() == 1
    with redis_server.client() as client:
        before = client.info("stats")["total_commands_processed"]
        assert await crowd(proxies, devservers.backend_url, 40) == [200] * 120
        after = client.info("stats")["total_commands_processed"]
    assert after - before <= 1  # the INFO itself: a valid token is served from memory
    for proxy in proxies:
        assert f"tokens kept in the token store redis://127.0.0.1:{redis_server.port}/0" in (
            proxy.output()
        )


def test_three_proxies_renew_once_per_lifetime_not_once_each(
    devservers: DevServersProcess, mitmdump: ProxyFactory, redis_server: RedisServer
) -> None:
    # A 4 s token is renewed 2 s into its life: one renewal per 2 s for the whole fleet, where
    # three separate caches would make three.
    devservers.configure(expires_in=4)
    proxies = fleet(mitmdump, devservers, redis_server)
    requests, elapsed, statuses = token_requests_while(
        devservers, lambda: drive(proxies, devservers.backend_url, 10)
    )
    assert set(statuses) == {200}
    assert 3 <= requests <= elapsed / 2 + 2


def test_redis_killed_fails_no_request_and_sharing_resumes_when_it_is_back(
    devservers: DevServersProcess, mitmdump: ProxyFactory, redis_server: RedisServer
) -> None:
    devservers.configure(expires_in=4)
    proxies = fleet(mitmdump, devservers, redis_server)
    assert set(drive(proxies, devservers.backend_url, 2)) == {200}
    before = [len(proxy.output()) for proxy in proxies]
    redis_server.kill()
    down_requests, down_elapsed, down = token_requests_while(
        devservers, lambda: drive(proxies, devservers.backend_url, 6)
    )
    assert set(down) == {200}  # each proxy fetched and kept its own tokens
    for proxy, seen in zip(proxies, before, strict=True):
        assert proxy.output()[seen:].count("keeping tokens in this process") == 1  # one each

    redis_server.start()  # empty: the fleet's key and tokens were lost with it
    deadline = time.monotonic() + 20
    while not all("is back: tokens are shared again" in p.output() for p in proxies):
        assert time.monotonic() < deadline, "a proxy never went back to Redis"
        assert set(drive(proxies, devservers.backend_url, 1)) == {200}
    up_requests, up_elapsed, up = token_requests_while(
        devservers, lambda: drive(proxies, devservers.backend_url, 8)
    )
    assert set(up) == {200}
    # Shared again: about one request per 2 s window for the fleet, not one per proxy.
    assert up_requests <= up_elapsed / 2 + 2
    assert down_requests > down_elapsed / 2 + 2  # while Redis was down, each proxy fetched


def test_a_hanging_redis_costs_requests_nothing_but_its_timeout(
    devservers: DevServersProcess, mitmdump: ProxyFactory, redis_server: RedisServer
) -> None:
    devservers.configure(expires_in=4)
    proxies = fleet(mitmdump, devservers, redis_server, "--set", "oauth2_store_timeout=200")
    assert set(drive(proxies, devservers.backend_url, 1)) == {200}
    before = [len(proxy.output()) for proxy in proxies]
    redis_server.pause()  # accepts nothing, answers nothing: every call would hang
    try:
        statuses = drive(proxies, devservers.backend_url, 5)  # renewals fall due meanwhile
    finally:
        redis_server.resume()
    assert set(statuses) == {200}
    for proxy, seen in zip(proxies, before, strict=True):
        since = proxy.output()[seen:]
        assert since.count("keeping tokens in this process") == 1  # one warning each
        assert "TimeoutError" in since


def test_a_killed_lock_holder_lets_another_proxy_refresh_after_its_lease(
    devservers: DevServersProcess,
    mitmdump: ProxyFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    devservers.configure(delay=5)  # the holder is still waiting for its token when killed
    holder, other, _ = fleet(mitmdump, devservers, redis_server, "--set", "oauth2_lock_lease=2")

    def lock_held_in_redis() -> None:
        with redis_server.client() as client:
            assert len(client.keys("mitm-oauth2:lock/*")) == 1

    kill_while_asking_for_a_token(holder, devservers, lock_held_in_redis)
    with other.client(timeout=15) as client:
        answer = client.get(f"{devservers.backend_url}/after-kill")
    assert answer.status_code == 200
    assert devservers.stats()["token_requests_arrived"] == 2


def test_rediss_with_password_and_store_key_shares_sealed_tokens(
    devservers: DevServersProcess,
    mitmdump: ProxyFactory,
    tls_ca: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TLS to Redis with a private CA, AUTH from the environment, tokens encrypted at rest."""
    server = RedisServer(tmp_path / "redis-tls", tls=tls_ca, password="redis-pw-5b1e")
    server.start()
    try:
        monkeypatch.setenv("FLEET_REDIS_PASSWORD", "redis-pw-5b1e")
        monkeypatch.setenv("FLEET_STORE_KEY", "fleet-store-key-aa01b2c3d4")
        options = (
            *("--set", f"oauth2_store_ca={tls_ca.ca_cert}"),
            *("--set", "oauth2_store_password_env=FLEET_REDIS_PASSWORD"),
            *("--set", "oauth2_store_key_env=FLEET_STORE_KEY"),
        )
        proxies = fleet(mitmdump, devservers, server, *options)
        assert set(drive(proxies, devservers.backend_url, 0.5)) == {200}
        assert devservers.token_requests() == 1
        with server.client() as client:
            keys = client.keys("*")
            stored = b"".join(client.get(key) or b"" for key in keys)
        assert any(key.startswith(b"mitm-oauth2:token/v1/ledger/") for key in keys)
        assert b"mitm-oauth2:hmac-key" not in keys  # derived from the store key instead
        seen = devservers.backend_requests()
        issued = {value.split()[-1] for entry in seen for value in entry["authorization"]}
        assert len(issued) == 1
        assert all(token.encode() not in stored for token in issued)
        for proxy in proxies:
            assert "redis-pw-5b1e" not in proxy.output()
            assert "keeping tokens in this process" not in proxy.output()
    finally:
        server.stop()
