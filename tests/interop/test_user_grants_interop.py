"""Acting as a user, through real mitmdumps, against oidc-provider with refresh-token rotation and
its reuse detection on (a spent refresh token presented again revokes the grant): the first
refresh token comes from signing in through the provider's own pages. Two proxies on one Redis
renew one at a time over 30 lifetimes of 2-second tokens without the grant being revoked; the
renewing proxy SIGKILLed at each point it controls; the password grant renews with its refresh
token; a revoked grant answers 502 "sign in again", logged once, without a retry storm."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.interop.oidc_users import ALICE
from tests.interop.oidc_users import ALICE_PASSWORD
from tests.interop.oidc_users import CLIENT_ID
from tests.interop.oidc_users import CLIENT_SECRET
from tests.interop.oidc_users import UserProvider
from tests.interop.oidc_users import sign_in
from tests.support.procs import until
from tests.support.proxies import COMMAND_PROBE
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory
from tests.support.redis_server import ROTATION_FLEET
from tests.support.redis_server import RedisServer
from tests.support.tcp_gate import Hold
from tests.support.tcp_gate import TcpGate

LIFETIMES = 30
STORE_KEY = "user-grant-store-key-5e1f"


class UserApi:
    """The user's API: answers 200 with the token's subject when the provider's introspection
    calls the bearer token active, else 401."""

    def __init__(self, provider: UserProvider) -> None:
        self.provider = provider
        self.tokens: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                api.tokens.append(token)
                active = bool(token) and api.provider.introspect(token).get("active") is True
                body = json.dumps({"user": ALICE} if active else {"error": "invalid_token"})
                self.send_response(200 if active else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(user_provider: UserProvider) -> Iterator[UserApi]:
    backend = UserApi(user_provider)
    yield backend
    backend.close()


def refresh_config(api: UserApi, token_url: str, **keys: str) -> str:
    host = api.url.removeprefix("http://")
    lines = [
        "[[backend]]",
        'name = "mail"',
        f'hosts = ["{host}"]',
        f'token_url = "{token_url}"',
        f'client_id = "{CLIENT_ID}"',
        f'client_secret = "{CLIENT_SECRET}"',
        *(f"{key} = {json.dumps(value)}" for key, value in keys.items()),
    ]
    return "\n".join(lines) + "\n"


def signed_in(provider: UserProvider, tmp_path: Path) -> Path:
    """The first refresh token, from a person's sign-in, in a file as the proxy reads it."""
    tokens = sign_in(provider, ALICE, ALICE_PASSWORD)
    path = tmp_path / "alice.rt"
    path.write_text(str(tokens["refresh_token"]) + "\n", encoding="utf-8")
    return path


def fleet(mitmdump: ProxyFactory, redis: RedisServer, config: str, count: int = 2) -> list[Proxy]:
    options = (
        *("--set", f"oauth2_store={redis.url}"),
        *("--set", "oauth2_store_key_env=USER_STORE_KEY"),
        *ROTATION_FLEET,
        *("-s", str(COMMAND_PROBE)),
    )
    return [mitmdump(config, *options) for _ in range(count)]


def status(proxy: Proxy) -> dict[str, Any]:
    with proxy.client() as client:
        answer = client.get("http://commands.probe.invalid/oauth.status")
    assert answer.status_code == 200, answer.text
    return dict(json.loads(answer.text)["mail"])


def get(proxy: Proxy, api: UserApi) -> httpx.Response:
    with proxy.client(timeout=20) as client:
        return client.get(f"{api.url}/inbox")


@pytest.fixture(autouse=True)
def store_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_STORE_KEY", STORE_KEY)


def test_two_proxies_renew_one_at_a_time_over_thirty_lifetimes(
    user_provider: UserProvider,
    api: UserApi,
    mitmdump: ProxyFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    given = signed_in(user_provider, tmp_path)
    config = refresh_config(
        api, user_provider.token_endpoint, grant="refresh_token", refresh_token_file=str(given)
    )
    proxies = fleet(mitmdump, redis_server, config)
    lifetime = user_provider.access_ttl
    statuses: list[int] = []
    errors: list[BaseException] = []

    def caller(proxy: Proxy, until_: float) -> None:
        try:
            with proxy.client(timeout=20) as client:
                while time.monotonic() < until_:
                    statuses.append(client.get(f"{api.url}/inbox").status_code)
                    time.sleep(0.1)  # light: the other suite shares the machine in CI
        except BaseException as e:
            errors.append(e)

    began = time.monotonic()
    end = began + LIFETIMES * lifetime
    callers = [threading.Thread(target=caller, args=(p, end)) for p in proxies]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(timeout=LIFETIMES * lifetime + 60)
    took = time.monotonic() - began
    assert errors == []
    assert set(statuses) == {200}, f"{statuses.count(200)} of {len(statuses)} answered 200"
    counts = user_provider.counts()
    assert counts.get("revoked", 0) == 0
    assert user_provider.events("grant.error") == []
    # Renewed ahead at half its lifetime (what refresh_margin allows a 2-second token), one
    # renewal at a time for the fleet: two proxies renewing each on their own make twice as
    # many.
    renewals = counts.get("refresh_token", 0)
    assert took / lifetime - 2 <= renewals <= took / (lifetime / 2) + 2
    with redis_server.client() as client:
        (key,) = client.keys("mitm-oauth2:refresh/v1/mail/*")
        stored = client.get(key) or b""
    assert stored.startswith(b"aesgcm1:")  # sealed with the store key
    assert get(proxies[0], api).status_code == 200  # the grant still works
    given_token = given.read_text(encoding="utf-8").strip()
    assert given_token not in "".join(proxy.output() for proxy in proxies)


@pytest.fixture
def gate(user_provider: UserProvider) -> Iterator[TcpGate]:
    port = int(user_provider.issuer.rsplit(":", 1)[1])
    relay = TcpGate(port)
    yield relay
    relay.close()


@pytest.fixture
def pair(
    user_provider: UserProvider,
    api: UserApi,
    mitmdump: ProxyFactory,
    redis_server: RedisServer,
    gate: TcpGate,
    tmp_path: Path,
) -> list[Proxy]:
    """Two proxies on one Redis whose token requests go through `gate`."""
    token_url = user_provider.token_endpoint.replace(
        user_provider.issuer, f"http://127.0.0.1:{gate.port}"
    )
    given = signed_in(user_provider, tmp_path)
    config = refresh_config(api, token_url, grant="refresh_token", refresh_token_file=str(given))
    return fleet(mitmdump, redis_server, config)


def intact(provider: UserProvider) -> None:
    """The grant is not revoked, and had the first refresh and one renewal."""
    counts = provider.counts()
    assert counts.get("revoked", 0) == 0
    assert counts["refresh_token"] == 2


def kill_while_held(holder: Proxy, api: UserApi, gate: TcpGate, what: Hold) -> None:
    """A request through `holder` that makes it renew, held by `gate` at `what`; then the
    holder is SIGKILLed and what the gate held is dropped."""
    gate.hold(what)
    asking = threading.Thread(target=lambda: _quietly(holder, api), daemon=True)
    asking.start()
    assert gate.held.wait(20), "the token request did not come"
    kill(holder)
    gate.release(deliver=False)
    asking.join(timeout=20)


def kill(proxy: Proxy) -> None:
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.proc.wait(timeout=10)


def _quietly(proxy: Proxy, api: UserApi) -> None:
    with contextlib.suppress(httpx.HTTPError):
        get(proxy, api)


def test_a_proxy_killed_before_its_renewal_reaches_the_server_costs_nothing(
    user_provider: UserProvider, api: UserApi, gate: TcpGate, pair: list[Proxy]
) -> None:
    holder, other = pair
    assert get(holder, api).status_code == 200  # the first refresh, with the given token
    time.sleep(user_provider.access_ttl)  # a test of a renewal: the token must have run out
    kill_while_held(holder, api, gate, Hold.REQUEST)
    assert get(other, api).status_code == 200  # after the dead holder's lease
    intact(user_provider)


def test_a_proxy_killed_after_saving_the_rotated_token_costs_nothing(
    user_provider: UserProvider, api: UserApi, pair: list[Proxy]
) -> None:
    holder, other = pair
    assert get(holder, api).status_code == 200  # rotated, saved, then the token used
    kill(holder)
    time.sleep(user_provider.access_ttl)
    assert get(other, api).status_code == 200
    intact(user_provider)


def test_a_proxy_killed_while_the_rotated_token_is_on_its_way_costs_the_grant(
    user_provider: UserProvider, api: UserApi, gate: TcpGate, pair: list[Proxy]
) -> None:
    """The one point no client can protect (docs/operations.md says so): the server rotated
    the token and the answer never arrives. oidc-provider has no reuse grace period, so the
    next renewal's spent token revokes the grant: the proxy then asks for a sign-in, once."""
    holder, other = pair
    assert get(holder, api).status_code == 200
    time.sleep(user_provider.access_ttl)
    kill_while_held(holder, api, gate, Hold.ANSWER)
    refused = [get(other, api) for _ in range(5)]
    assert {answer.status_code for answer in refused} == {502}
    problem = refused[0].json()
    assert "a person must sign in again" in problem["detail"]
    assert user_provider.counts()["revoked"] == 1
    # Asked once, not for every request (printed before its answer, read here on a thread).
    assert len(user_provider.events("grant.error", at_least=1)) == 1
    assert status(other)["sign_in_required"] is True

    def told() -> list[str]:
        return [line for line in other.output().splitlines() if "sign in again" in line]

    assert len(until(told, "the log line")) == 1


def test_the_password_grant_renews_with_its_refresh_token(
    user_provider: UserProvider,
    api: UserApi,
    mitmdump: ProxyFactory,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALICE_PASSWORD", ALICE_PASSWORD)
    config = (
        refresh_config(api, user_provider.token_endpoint, grant="password", username=ALICE)
        + 'password_env = "ALICE_PASSWORD"\n'
    )
    (proxy,) = fleet(mitmdump, redis_server, config, count=1)
    for _ in range(3):
        assert get(proxy, api).status_code == 200
        time.sleep(user_provider.access_ttl)
    assert get(proxy, api).status_code == 200
    counts = user_provider.counts()
    assert counts["password"] == 1  # the password once; then its refresh tokens, rotated
    assert counts["refresh_token"] >= 3
    assert counts.get("revoked", 0) == 0
    output = proxy.output()
    assert "RFC 9700" in output
    assert ALICE_PASSWORD not in output
    until(lambda: status(proxy)["fetches"] >= 4, "the status counts every token")
