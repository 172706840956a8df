"""Self-healing on 401 through the real mitmdump: evict, fetch a fresh token, replay once.

The backend's answers are forced with the devservers' ``backend_status``/``backend_challenge``
knobs, or come naturally after ``revoke()`` (401 ``Bearer error="invalid_token"``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy import io

from tests.support.devservers import DEMO_CLIENT_ID
from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersProcess
from tests.support.devservers import toml_backend
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory

INVALID_TOKEN = 'Bearer error="invalid_token", error_description="The access token expired"'


def config_for(servers: DevServersProcess, host: str | None = None, **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "name": "orders",
        "hosts": [host or servers.backend_host],
        "token_url": servers.token_url,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
    }
    return toml_backend(**{**fields, **overrides})


def tokens_seen(servers: DevServersProcess) -> list[str]:
    """The bearer token of each backend request, in order."""
    seen = []
    for received in servers.backend_requests():
        assert len(received["authorization"]) == 1, received
        scheme, _, token = received["authorization"][0].partition(" ")
        assert scheme == "Bearer"
        seen.append(token)
    return seen


def assert_no_token_in_output(servers: DevServersProcess, proxy: Proxy) -> None:
    output = proxy.output()
    assert all(token not in output for token in tokens_seen(servers))


@dataclass(frozen=True)
class Saving:
    """A proxy that saves its flows to `file`."""

    proxy: Proxy
    file: Path

    def flows(self) -> list[http.HTTPFlow]:
        """The proxy stopped, the HTTP flows it saved."""
        self.proxy.stop()
        with self.file.open("rb") as file:
            return [f for f in io.FlowReader(file).stream() if isinstance(f, http.HTTPFlow)]


@pytest.fixture
def saving(devservers: DevServersProcess, mitmdump: ProxyFactory, tmp_path: Path) -> Saving:
    """A proxy for `config_for(devservers)` that saves its flows."""
    saved = tmp_path / "flows.mitm"
    return Saving(mitmdump(config_for(devservers), "--set", f"save_stream_file={saved}"), saved)


def test_revoked_token_one_replay_of_a_post_with_its_body(
    devservers: DevServersProcess, saving: Saving
) -> None:
    proxy = saving.proxy
    url = f"{devservers.backend_url}/orders?id=7"
    with proxy.client() as client:
        assert client.post(url, content=b"warm-up").status_code == 200
        devservers.revoke()  # the cached token is now refused with invalid_token
        answer = client.post(url, content=b'{"item": 42}', headers={"X-Request-Id": "r-1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["body"] == '{"item": 42}'
    assert devservers.token_requests() == 2  # the first token and the fresh one, no more
    _, rejected, replayed = devservers.backend_requests()
    assert (rejected["ok"], replayed["ok"]) == (False, True)
    for key in ("method", "path", "body", "host"):
        assert rejected[key] == replayed[key], key
    assert (replayed["method"], replayed["path"]) == ("POST", "/orders?id=7")
    assert replayed["body"] == '{"item": 42}'
    first, again, fresh = tokens_seen(devservers)
    assert first == again != fresh
    proxy.wait_for_output(r"backend orders: token rejected \(401\); replayed .*: 200")
    assert_no_token_in_output(devservers, proxy)
    with proxy.client() as client:  # the fresh token stays in use
        assert client.get(url).status_code == 200
    assert devservers.token_requests() == 2
    flows = saving.flows()  # they record the replay (and save fine)
    original = next(f for f in flows if f.request.content == b'{"item": 42}' and not f.is_replay)
    copy = next(f for f in flows if f.is_replay == "request")
    assert original.metadata["oauth2"]["backend"] == "orders"
    assert original.metadata["oauth2"]["replayed"] is True
    assert original.metadata["oauth2"]["source"] == "renewed after 401"
    assert copy.metadata["oauth2"]["backend"] == "orders"
    assert copy.metadata["oauth2"]["replay_of"] == original.id
    assert original.response is not None
    assert original.response.status_code == 200


def test_rejected_token_without_a_fresh_one_is_a_refusal_marked_in_the_flow(
    devservers: DevServersProcess, saving: Saving
) -> None:
    url = f"{devservers.backend_url}/orders"
    with saving.proxy.client() as client:
        assert client.get(url).status_code == 200
        devservers.revoke()
        devservers.configure(status=500)  # and the authorization server is failing
        answer = client.get(url)
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert "token endpoint answered HTTP 500" in answer.json()["detail"]
    good, refused = saving.flows()
    assert not good.marked
    assert refused.marked
    assert refused.response is not None
    assert refused.response.status_code == 502
    cause = "token rejected (401), no fresh one: token endpoint answered HTTP 500 with error"
    assert refused.metadata["oauth2"]["error"].startswith(cause)
    assert cause in refused.comment
    assert "left" not in refused.comment  # not the story of the token it had


@pytest.mark.parametrize("challenge", [INVALID_TOKEN, None])
def test_backend_that_keeps_rejecting_gets_one_replay_and_the_caller_the_second_401(
    devservers: DevServersProcess, mitmdump: ProxyFactory, challenge: str | None
) -> None:
    devservers.configure(backend_status=401, backend_challenge=challenge)
    proxy = mitmdump(config_for(devservers))
    with proxy.client() as client:
        answer = client.put(f"{devservers.backend_url}/orders/1", content=b"update")
        assert answer.status_code == 401
        assert answer.headers.get("www-authenticate") == challenge
        assert len(devservers.backend_requests()) == 2  # the request and one replay
        assert devservers.token_requests() == 2
        assert [r["body"] for r in devservers.backend_requests()] == ["update", "update"]
        first, fresh = tokens_seen(devservers)
        assert first != fresh
        proxy.wait_for_output(r"and the fresh one too: the client gets the second 401")
        # A token rejected right after it was issued is not thrown away again at once:
        # a backend that refuses every token must not cost a token request per request.
        assert client.get(f"{devservers.backend_url}/orders/1").status_code == 401
    assert len(devservers.backend_requests()) == 3
    assert devservers.token_requests() == 2
    assert_no_token_in_output(devservers, proxy)


@pytest.mark.parametrize(
    ("status", "challenge"),
    [
        (403, 'Bearer error="insufficient_scope", scope="orders.write"'),
        (401, 'Bearer error="invalid_request"'),
        (401, 'Basic realm="orders"'),
    ],
)
def test_answers_that_do_not_reject_the_token_are_not_retried(
    devservers: DevServersProcess, mitmdump: ProxyFactory, status: int, challenge: str
) -> None:
    devservers.configure(backend_status=status, backend_challenge=challenge)
    proxy = mitmdump(config_for(devservers))
    with proxy.client() as client:
        answer = client.post(f"{devservers.backend_url}/orders", content=b"x")
        assert (answer.status_code, answer.headers["www-authenticate"]) == (status, challenge)
        devservers.configure(backend_status=None)
        # the token was kept: the next request uses it without a token request
        assert client.get(f"{devservers.backend_url}/orders").status_code == 200
    assert len(devservers.backend_requests()) == 2
    assert devservers.token_requests() == 1


def test_retry_on_401_false_gives_the_caller_the_401(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(config_for(devservers, retry_on_401=False))
    with proxy.client() as client:
        assert client.get(f"{devservers.backend_url}/a").status_code == 200
        devservers.revoke()
        answer = client.post(f"{devservers.backend_url}/a", content=b"once")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert len(devservers.backend_requests()) == 2
    assert devservers.token_requests() == 1


def test_streamed_request_body_is_not_replayed_but_the_token_is_evicted(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(config_for(devservers), "--set", "stream_large_bodies=1k")
    url = f"{devservers.backend_url}/upload"
    with proxy.client() as client:
        assert client.get(url).status_code == 200
        devservers.revoke()
        answer = client.post(url, content=b"z" * 4096)  # streamed: gone once sent
        assert answer.status_code == 401
        assert len(devservers.backend_requests()) == 2
        assert client.post(url, content=b"small").status_code == 200  # with a fresh token
    assert devservers.token_requests() == 2
    proxy.wait_for_output(r"not replayed: the request body was streamed")


def test_upstream_mode_replay_goes_through_the_upstream_proxy(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    upstream = mitmdump(config_for(devservers, host="elsewhere.test"))  # adds no token here
    proxy = mitmdump(config_for(devservers), mode=f"upstream:{upstream.url}")
    url = f"{devservers.backend_url}/via"
    with proxy.client() as client:
        assert client.post(url, content=b"a").status_code == 200
        devservers.revoke()
        assert client.post(url, content=b"b").status_code == 200
    assert devservers.token_requests() == 2
    assert [r["body"] for r in devservers.backend_requests()] == ["a", "b", "b"]
    # all three requests, the replay included, went through the upstream proxy
    deadline = time.monotonic() + 10
    while upstream.output().count(f"POST {url}") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.output().count(f"POST {url}") == 3, upstream.output()


def test_https_through_connect_replay_uses_mitmproxys_upstream_tls_settings(
    devservers_tls: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    """The backend's certificate is trusted only through ssl_verify_upstream_trusted_ca."""
    port = devservers_tls.backend_host.rsplit(":", 1)[1]
    proxy = mitmdump(config_for(devservers_tls, host=f"localhost:{port}"))
    url = f"https://localhost:{port}/pay"
    with proxy.client() as client:
        assert client.post(url, content=b"first").status_code == 200
        devservers_tls.revoke()
        answer = client.post(url, content=b"second")
    assert answer.status_code == 200, answer.text
    assert answer.json()["body"] == "second"
    assert devservers_tls.token_requests() == 2
    _, rejected, replayed = devservers_tls.backend_requests()
    assert (rejected["ok"], replayed["ok"]) == (False, True)
    assert replayed["host"] == rejected["host"] == f"localhost:{port}"
    assert_no_token_in_output(devservers_tls, proxy)


@pytest.mark.anyio
async def test_concurrent_rejections_share_one_fresh_token(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(config_for(devservers))
    url = f"{devservers.backend_url}/orders"
    async with proxy.async_client() as client:
        assert (await client.get(url)).status_code == 200
        devservers.revoke()
        # The first 401 comes back only after all ten carry the revoked token: without the
        # delay, a fast backend lets the fresh token reach the later requests first.
        devservers.configure(backend_delay=0.2)
        bodies = [f"order-{i}".encode() for i in range(10)]
        answers = await asyncio.gather(*(client.post(url, content=body) for body in bodies))
    assert [a.status_code for a in answers] == [200] * 10
    assert sorted(a.json()["body"] for a in answers) == sorted(b.decode() for b in bodies)
    assert devservers.token_requests() == 2  # one eviction, one fresh token for all ten
    # Each request was rejected with the revoked token and replayed once, unless it came after
    # the fresh token (how many do is up to the scheduler): then it went once, with that token.
    for body in bodies:
        seen = [r["ok"] for r in devservers.backend_requests() if r["body"] == body.decode()]
        assert seen in ([False, True], [True])
    assert any(r["ok"] is False for r in devservers.backend_requests())
