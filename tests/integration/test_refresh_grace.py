"""The one crash the proxy cannot guard against, with a server that can: the renewing proxy is
SIGKILLed after the server rotated the refresh token, while its answer is on its way. A server
with a reuse grace period (Okta's, Auth0's reuse interval; the dev server's
`refresh_reuse_grace`) takes the spent token once more, so the other proxy renews with it and
the user's sign-in survives; without one (the dev server's default, as oidc-provider) the grant
is revoked, which tests/interop shows against oidc-provider."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.devservers import DevServersProcess
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory
from tests.support.redis_server import ROTATION_FLEET
from tests.support.redis_server import RedisServer
from tests.support.tcp_gate import Hold
from tests.support.tcp_gate import TcpGate

LIFETIME = 2


@pytest.fixture
def gate(devservers: DevServersProcess) -> Iterator[TcpGate]:
    relay = TcpGate(urlsplit(devservers.token_url).port or 80)
    yield relay
    relay.close()


def test_a_server_with_a_reuse_grace_period_survives_a_crash_in_flight(
    devservers: DevServersProcess,
    mitmdump: ProxyFactory,
    redis_server: RedisServer,
    gate: TcpGate,
    tmp_path: Path,
) -> None:
    devservers.configure(expires_in=LIFETIME, refresh_reuse_grace=60)
    given = tmp_path / "user.rt"
    given.write_text(devservers.sign_in() + "\n", encoding="utf-8")
    token_url = urlsplit(devservers.token_url)._replace(netloc=f"127.0.0.1:{gate.port}").geturl()
    config = devservers.backend_toml(
        "mail", token_url=token_url, grant="refresh_token", refresh_token_file=str(given)
    )
    options = ("--set", f"oauth2_store={redis_server.url}", *ROTATION_FLEET)
    holder, other = (mitmdump(config, *options) for _ in range(2))
    url = f"{devservers.backend_url}/mail"
    assert holder.get_each([url])[0].status_code == 200
    time.sleep(LIFETIME)  # the token has run out: the next request renews
    gate.hold(Hold.ANSWER)
    asking = threading.Thread(target=lambda: _quietly(holder, url), daemon=True)
    asking.start()
    assert gate.held.wait(20), "the renewal did not come"
    assert holder.proc is not None
    holder.proc.send_signal(signal.SIGKILL)  # the server has rotated; its answer is lost
    holder.proc.wait(timeout=10)
    gate.release(deliver=False)
    asking.join(timeout=20)
    assert [answer.status_code for answer in other.get_each([url] * 3)] == [200] * 3
    stats = devservers.stats()
    assert stats["sign_ins_revoked"] == 0
    refreshes = [e for e in stats["token_request_log"] if e["grant_type"] == "refresh_token"]
    assert [e["status"] for e in refreshes] == [200, 200, 200]  # first, lost, taken again


def _quietly(proxy: Proxy, url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        proxy.get_each([url])
