"""Token lifecycle through real mitmdump processes: crowds, fleets on one cache, IdP outages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mitm_oauth2.tokens.broker import STORE_LOOK_INTERVAL
from tests.support.devservers import DevServersProcess
from tests.support.procs import until
from tests.support.proxies import COMMAND_PROBE
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory


async def crowd(proxies: list[Proxy], url: str, per_proxy: int) -> list[int]:
    async def through(proxy: Proxy) -> list[int]:
        limits = httpx.Limits(max_connections=per_proxy)
        async with proxy.async_client(limits=limits, timeout=30) as client:
            answers = await asyncio.gather(*(client.get(f"{url}/{i}") for i in range(per_proxy)))
        return [answer.status_code for answer in answers]

    results = await asyncio.gather(*(through(proxy) for proxy in proxies))
    return [status for statuses in results for status in statuses]


@pytest.mark.anyio
async def test_200_callers_at_cold_start_with_a_slow_idp_make_one_token_request(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(delay=0.5)
    proxy = mitmdump(devservers.backend_toml("ledger"))
    statuses = await crowd([proxy], devservers.backend_url, 200)
    assert statuses == [200] * 200
    assert devservers.token_requests() == 1


@pytest.mark.anyio
async def test_four_processes_on_one_cache_dir_make_one_token_request(
    devservers: DevServersProcess, mitmdump: ProxyFactory, tmp_path: Path
) -> None:
    devservers.configure(delay=0.5)
    shared = tmp_path / "shared-cache"
    proxies = [mitmdump(devservers.backend_toml("ledger"), cache_dir=shared) for _ in range(4)]
    statuses = await crowd(proxies, devservers.backend_url, 25)
    assert statuses == [200] * 100
    assert devservers.token_requests() == 1


def test_four_processes_renew_once_per_lifetime_not_once_each(
    devservers: DevServersProcess, mitmdump: ProxyFactory, tmp_path: Path
) -> None:
    # A 4 s token is renewed 2 s into its life; 4 processes driven for 10 s share each renewal.
    devservers.configure(expires_in=4)
    shared = tmp_path / "shared-cache"
    proxies = [mitmdump(devservers.backend_toml("ledger"), cache_dir=shared) for _ in range(4)]
    clients = [proxy.client() for proxy in proxies]
    started = time.monotonic()
    try:
        while time.monotonic() - started < 10:
            for client in clients:
                assert client.get(f"{devservers.backend_url}/tick").status_code == 200
            time.sleep(0.1)  # paces the load; the assertions are on counts, not on timing
    finally:
        for client in clients:
            client.close()
    elapsed = time.monotonic() - started
    # One renewal per 2 s window at most (plus the first fetch); 4 separate caches would make
    # four times as many.
    assert devservers.token_requests() <= elapsed / 2 + 2
    assert devservers.token_requests() >= 3  # it did renew


def test_idp_retry_after_means_503_and_no_token_request_before_it_elapses(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(status=503, body="busy", retry_after=30)
    proxy = mitmdump(devservers.backend_toml("ledger"))
    answers = proxy.get_each(f"{devservers.backend_url}/x" for _ in range(10))
    assert {answer.status_code for answer in answers} == {503}
    assert all(answer.headers["content-type"] == "application/problem+json" for answer in answers)
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 30
    assert devservers.token_requests() == 1
    assert devservers.backend_requests() == []


def test_permanent_idp_error_is_not_retried_per_request(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(devservers.backend_toml("ledger", client_secret="wrong"))
    answers = proxy.get_each(f"{devservers.backend_url}/x" for _ in range(10))
    assert {answer.status_code for answer in answers} == {502}
    assert {answer.json()["oauth_error"] for answer in answers} == {"invalid_client"}
    assert devservers.token_requests() == 1
    assert proxy.output().count("backend ledger: no token") == 1  # one line, not one per request


def test_idp_outage_keeps_serving_the_valid_token(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    # A 6 s token enters its renewal window at 3 s; the IdP is down from then on.
    devservers.configure(expires_in=6)
    proxy = mitmdump(devservers.backend_toml("ledger"))
    with proxy.client() as client:
        assert client.get(f"{devservers.backend_url}/a").status_code == 200
        devservers.configure(down=True)
        deadline = time.monotonic() + 20
        statuses = []
        while time.monotonic() < deadline:
            status = client.get(f"{devservers.backend_url}/b").status_code
            statuses.append(status)
            if status != 200:
                break
            time.sleep(0.2)  # paces the load; the assertions are on outcomes
    # Served until the token expired, then refused: never sent with an expired token.
    assert statuses[-1] == 502
    assert statuses.count(200) >= 5
    assert devservers.token_requests() >= 2  # the renewal was tried while the token was valid
    assert all(request["ok"] for request in devservers.backend_requests())
    assert "current token used until it expires" in proxy.output()


def test_sigkilled_lock_holder_delays_the_others_at_most_its_lease(
    devservers: DevServersProcess, mitmdump: ProxyFactory, tmp_path: Path
) -> None:
    devservers.configure(delay=5)  # the holder is still waiting for its token when killed
    shared = tmp_path / "shared-cache"
    lease = ("--set", "oauth2_lock_lease=2")
    holder = mitmdump(devservers.backend_toml("ledger"), *lease, cache_dir=shared)
    other = mitmdump(devservers.backend_toml("ledger"), *lease, cache_dir=shared)
    kill_while_asking_for_a_token(holder, devservers)
    with other.client(timeout=15) as client:
        answer = client.get(f"{devservers.backend_url}/after-kill")
    assert answer.status_code == 200
    assert devservers.stats()["token_requests_arrived"] == 2
    assert "/before-kill" not in [r["path"] for r in devservers.backend_requests()]


def kill_while_asking_for_a_token(
    holder: Proxy, devservers: DevServersProcess, check_held: Callable[[], None] = lambda: None
) -> None:
    """SIGKILLs `holder` while its token request (so its lock) is outstanding, after
    `check_held`; then makes the token server answer at once again. The caller sets a delay
    long enough to catch it."""
    stuck = threading.Thread(target=lambda: request_quietly(holder, devservers.backend_url))
    stuck.start()
    deadline = time.monotonic() + 10
    while devservers.stats()["token_requests_arrived"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # waits for the holder's token request to arrive
    assert devservers.token_requests() == 0  # not answered yet
    check_held()
    assert holder.proc is not None
    holder.proc.send_signal(signal.SIGKILL)  # dies holding the lock
    holder.proc.wait(timeout=10)
    stuck.join(timeout=15)
    devservers.configure(delay=0)


def request_quietly(proxy: Proxy, url: str) -> None:
    with contextlib.suppress(httpx.HTTPError), proxy.client(timeout=15) as client:
        client.get(f"{url}/before-kill")


def _status(proxy: Proxy, backend: str) -> dict[str, Any]:
    """`oauth.status` for `backend`, asked through the proxy (see COMMAND_PROBE)."""
    with proxy.client() as client:
        answer = client.get("http://commands.probe.invalid/oauth.status")
    assert answer.status_code == 200, answer.text
    return dict(json.loads(answer.text)[backend])


def test_status_tells_a_token_another_process_put_in_the_shared_cache(
    devservers: DevServersProcess, mitmdump: ProxyFactory, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-cache"
    config = devservers.backend_toml("ledger")
    probe = ("-s", str(COMMAND_PROBE))
    first, second = (mitmdump(config, *probe, cache_dir=shared) for _ in range(2))
    assert _status(second, "ledger")["token"] == "none"

    with first.client() as client:
        assert client.get(f"{devservers.backend_url}/a").status_code == 200
    assert _status(first, "ledger")["token"] == "memory"
    # The second reads the store every STORE_LOOK_INTERVAL while it holds no token itself.
    seen = until(
        lambda: (status := _status(second, "ledger"))["token"] == "store" and status,
        "the second process seeing the stored token",
        timeout=STORE_LOOK_INTERVAL + 10,
    )
    assert seen["fetches"] == 0
    assert 3500 < seen["token_left_s"] <= 3590
    # A process started now reads it at its start, well before its first interval is over.
    third = mitmdump(config, *probe, cache_dir=shared)
    until(lambda: _status(third, "ledger")["token"] == "store", "read at start", timeout=3)

    with second.client() as client:
        assert client.get(f"{devservers.backend_url}/b").status_code == 200
    assert _status(second, "ledger")["token"] == "memory"
    assert devservers.token_requests() == 1  # one token, fetched by the first, used by all
