"""The real mitmdump with the addon, a local authorization server and a backend, over plain HTTP.

Regular proxy mode with httpx and curl, and reverse mode. Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersProcess
from tests.support.procs import curl
from tests.support.proxies import ProxyFactory

pytestmark = pytest.mark.anyio


def bearer_tokens_seen(servers: DevServersProcess) -> list[list[str]]:
    return [r["authorization"] for r in servers.backend_requests()]


def test_token_is_fetched_once_and_reused(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(devservers.backend_toml("orders", scope="orders.read orders.write"))
    answers = proxy.get_each(f"{devservers.backend_url}/orders/{i}" for i in range(3))
    assert [a.status_code for a in answers] == [200, 200, 200], answers[-1].text
    assert devservers.token_requests() == 1
    (fetch,) = devservers.stats()["token_request_log"]
    assert (fetch["auth"], fetch["scope"]) == ("basic", "orders.read orders.write")
    seen = bearer_tokens_seen(devservers)
    assert len(seen) == 3
    assert all(len(headers) == 1 and headers[0].startswith("Bearer ") for headers in seen)
    assert len({headers[0] for headers in seen}) == 1
    assert "backend orders: fetched token" in proxy.output()
    assert "Loading script" in proxy.output()
    assert f"{Path('addon', 'oauth2_backend.py')}" in proxy.output()  # the script users load


def test_without_the_proxy_the_backend_refuses(devservers: DevServersProcess) -> None:
    with devservers.backend_client() as client:
        assert client.get("/orders").status_code == 401


def test_client_secret_post(devservers: DevServersProcess, mitmdump: ProxyFactory) -> None:
    proxy = mitmdump(devservers.backend_toml("orders", auth_method="client_secret_post"))
    with proxy.client() as client:
        assert client.get(f"{devservers.backend_url}/x").status_code == 200
    (fetch,) = devservers.stats()["token_request_log"]
    assert fetch["auth"] == "post"


def test_callers_authorization_is_replaced_and_post_body_arrives_intact(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(devservers.backend_toml("orders"))
    body = json.dumps({"item": "café", "qty": 3, "note": "a&b=c%d+e"}).encode()
    with proxy.client() as client:
        answer = client.post(
            f"{devservers.backend_url}/orders",
            content=body,
            headers={
                "Authorization": "Bearer caller-made-this-up",
                "Content-Type": "application/json",
            },
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["body"] == body.decode()
    (received,) = devservers.backend_requests()
    assert received["method"] == "POST"
    assert len(received["authorization"]) == 1
    assert "caller-made-this-up" not in received["authorization"][0]


@pytest.mark.parametrize("steer", [False, True], ids=["other-name", "host-header-names-it"])
def test_another_host_name_gets_no_authorization(
    devservers: DevServersProcess, mitmdump: ProxyFactory, steer: bool
) -> None:
    """Same server, other name: "localhost" is not in hosts, so it must not get the token, not
    even with a Host header naming the backend (that does not make the target a backend)."""
    proxy = mitmdump(devservers.backend_toml("orders"))
    port = devservers.backend_host.rsplit(":", 1)[1]
    headers = {"Host": devservers.backend_host} if steer else {}
    with proxy.client() as client:
        answer = client.get(f"http://localhost:{port}/orders", headers=headers)
    assert answer.status_code == 401
    assert bearer_tokens_seen(devservers) == [[]]
    assert devservers.token_requests() == 0


def test_token_survives_a_proxy_restart(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(devservers.backend_toml("orders"))
    with proxy.client() as client:
        assert client.get(f"{devservers.backend_url}/a").status_code == 200
    proxy.restart()
    with proxy.client() as client:
        assert client.get(f"{devservers.backend_url}/b").status_code == 200
    assert devservers.token_requests() == 1
    first, second = bearer_tokens_seen(devservers)
    assert first == second


async def test_concurrent_callers_cause_one_token_request(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(delay=0.5)  # the crowd arrives while the token request is in flight
    proxy = mitmdump(devservers.backend_toml("orders"))
    limits = httpx.Limits(max_connections=100)
    async with proxy.async_client(limits=limits, timeout=30) as client:
        answers = await asyncio.gather(
            *(client.get(f"{devservers.backend_url}/c/{i}") for i in range(100))
        )
    assert [a.status_code for a in answers] == [200] * 100
    assert devservers.token_requests() == 1


def test_expired_token_is_renewed(devservers: DevServersProcess, mitmdump: ProxyFactory) -> None:
    # A 2 s token is reused for 1 s (margin = half the lifetime), then renewed ahead of expiry.
    devservers.configure(expires_in=2)
    proxy = mitmdump(devservers.backend_toml("orders"))
    deadline = time.monotonic() + 15
    with proxy.client() as client:
        while time.monotonic() < deadline:
            assert client.get(f"{devservers.backend_url}/r").status_code == 200
            if len({headers[0] for headers in bearer_tokens_seen(devservers)}) == 2:
                break
            time.sleep(0.2)  # paces the loop; the assertions are on counts, not on timing
    tokens = [headers[0] for headers in bearer_tokens_seen(devservers)]
    assert len(set(tokens)) == 2
    assert devservers.token_requests() == 2
    assert tokens.count(tokens[0]) > 1  # the first token was reused before renewal


def test_max_token_age_caps_expires_in(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(devservers.backend_toml("orders", max_token_age=2))
    deadline = time.monotonic() + 15
    with proxy.client() as client:
        while devservers.token_requests() < 2 and time.monotonic() < deadline:
            assert client.get(f"{devservers.backend_url}/m").status_code == 200
            time.sleep(0.2)  # paces the loop; the assertion is on the count, not on timing
    assert devservers.token_requests() == 2


@pytest.mark.parametrize(
    ("knobs", "cause"),
    [
        ({"down": True}, "closed the connection without an answer"),
        ({"status": 503, "body": "<html>maintenance</html>"}, "HTTP 503"),
        ({"status": 400, "body": '{"error": "invalid_scope"}'}, "invalid_scope"),
    ],
)
def test_no_token_means_502_problem_and_nothing_forwarded(
    devservers: DevServersProcess, mitmdump: ProxyFactory, knobs: dict[str, object], cause: str
) -> None:
    devservers.configure(**knobs)
    proxy = mitmdump(devservers.backend_toml("orders"))
    with proxy.client() as client:
        answer = client.post(f"{devservers.backend_url}/orders", content=b"do not forward")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 502
    assert problem["backend"] == "orders"
    assert "orders" in problem["detail"]
    assert cause in problem["detail"]
    assert "maintenance" not in answer.text  # never the token endpoint's raw body
    assert DEMO_CLIENT_SECRET not in answer.text
    assert devservers.backend_requests() == []
    assert "backend orders: no token" in proxy.output()


def test_wrong_secret_is_reported_as_invalid_client(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(devservers.backend_toml("orders", client_secret="not the secret"))
    with proxy.client() as client:
        answer = client.get(f"{devservers.backend_url}/orders")
    assert answer.status_code == 502
    assert answer.json()["oauth_error"] == "invalid_client"
    assert "not the secret" not in proxy.output()


def test_curl_through_the_proxy(devservers: DevServersProcess, mitmdump: ProxyFactory) -> None:
    proxy = mitmdump(devservers.backend_toml("orders"))
    done = curl("-x", proxy.url, "-d", "hello=world", f"{devservers.backend_url}/orders")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["body"] == "hello=world"
    assert devservers.token_requests() == 1


def test_reverse_mode(devservers: DevServersProcess, mitmdump: ProxyFactory) -> None:
    proxy = mitmdump(devservers.backend_toml("orders"), mode=f"reverse:{devservers.backend_url}")
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=10) as client:
        answers = [client.get("/orders"), client.get("/orders", headers={"Host": "evil.test"})]
    assert [a.status_code for a in answers] == [200, 200]
    assert devservers.token_requests() == 1
    done = curl(f"{proxy.url}/orders")
    assert done.returncode == 0
    assert json.loads(done.stdout)["ok"] is True
