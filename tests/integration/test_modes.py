"""The same promises in every way a client reaches a backend through the proxy.

Plain HTTP through the proxy, HTTPS through CONNECT, and reverse mode in front of an HTTPS backend:
the token is reused, the caller's Authorization is replaced, a POST body arrives intact, and when
no token can be had the caller gets a 502 problem while the backend receives nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.proxies import ProxyFactory


@dataclass
class Route:
    servers: DevServersProcess
    client: httpx.Client
    url: str


def _proxy_route(tls: bool) -> Callable[[DevServersFactory, ProxyFactory], Route]:
    def make(start_servers: DevServersFactory, mitmdump: ProxyFactory) -> Route:
        servers = start_servers(tls=tls)
        port = servers.backend_host.rsplit(":", 1)[1]
        host = f"localhost:{port}"  # the name the test certificate is issued for
        proxy = mitmdump(servers.backend_toml("api", hosts=[host]))
        scheme = "https" if tls else "http"
        return Route(servers, proxy.client(), f"{scheme}://{host}")

    return make


def _reverse_route(start_servers: DevServersFactory, mitmdump: ProxyFactory) -> Route:
    servers = start_servers(tls=True)
    port = servers.backend_host.rsplit(":", 1)[1]
    backend = f"https://localhost:{port}"
    proxy = mitmdump(
        servers.backend_toml("api", hosts=[f"localhost:{port}"]), mode=f"reverse:{backend}"
    )
    return Route(servers, httpx.Client(trust_env=False, timeout=10), proxy.url)


ROUTES = {
    "http-proxy": _proxy_route(tls=False),
    "https-connect": _proxy_route(tls=True),
    "reverse-to-https": _reverse_route,
}


@pytest.fixture(params=sorted(ROUTES))
def route(
    request: pytest.FixtureRequest,
    devservers_factory: DevServersFactory,
    mitmdump: ProxyFactory,
) -> Iterator[Route]:
    made = ROUTES[request.param](devservers_factory, mitmdump)
    with made.client:
        yield made


def test_token_reused_header_replaced_body_intact(route: Route) -> None:
    body = b'{"amount": "12.50", "memo": "a+b&c=d"}'
    first = route.client.get(f"{route.url}/accounts", headers={"Authorization": "Basic eDp5"})
    second = route.client.post(f"{route.url}/payments", content=body)
    assert (first.status_code, second.status_code) == (200, 200), second.text
    assert second.json()["body"] == body.decode()
    assert route.servers.token_requests() == 1
    received = route.servers.backend_requests()
    assert [r["method"] for r in received] == ["GET", "POST"]
    assert all(len(r["authorization"]) == 1 for r in received)
    assert received[0]["authorization"] == received[1]["authorization"]
    assert received[0]["authorization"][0].startswith("Bearer ")


def test_no_token_means_502_problem_and_backend_untouched(route: Route) -> None:
    route.servers.configure(status=500, body="internal error page")
    answer = route.client.post(f"{route.url}/payments", content=b"must not arrive")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["backend"] == "api"
    assert "internal error page" not in answer.text
    assert route.servers.backend_requests() == []
