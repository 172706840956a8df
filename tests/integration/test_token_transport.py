"""The token call's own transport through the real mitmdump: a private CA for the token
endpoint (`token_ca_bundle`), never an unverified connection without it, `token_timeout`,
and `token_proxy`."""

from __future__ import annotations

from tests.support.devservers import DEMO_CLIENT_ID
from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.devservers import toml_backend
from tests.support.proxies import ProxyFactory


def test_https_token_endpoint_trusted_through_token_ca_bundle(
    devservers_factory: DevServersFactory, mitmdump: ProxyFactory, tls_ca: TlsFiles
) -> None:
    servers = devservers_factory(token_tls=True)
    assert servers.token_url.startswith("https://127.0.0.1:")
    proxy = mitmdump(servers.backend_toml(token_ca_bundle=str(tls_ca.ca_cert)))
    with proxy.client() as client:
        answer = client.get(f"{servers.backend_url}/things")
    assert answer.status_code == 200, answer.text
    (entry,) = servers.token_log()
    assert (entry["auth"], entry["status"]) == ("basic", 200)


def test_without_token_ca_bundle_the_private_ca_is_not_trusted(
    devservers_factory: DevServersFactory, mitmdump: ProxyFactory
) -> None:
    """mitmproxy's own upstream trust (ssl_verify_upstream_trusted_ca = the test CA here) is not
    the token call's: without token_ca_bundle the handshake fails, nothing is sent."""
    servers = devservers_factory(token_tls=True)
    proxy = mitmdump(servers.backend_toml())
    with proxy.client() as client:
        answer = client.post(f"{servers.backend_url}/things", content=b"must not arrive")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    assert "cannot connect to token endpoint" in detail
    assert "CERTIFICATE_VERIFY_FAILED" in detail
    assert servers.stats()["token_requests_arrived"] == 0  # no request went over that channel
    assert servers.backend_requests() == []


def test_token_timeout(devservers: DevServersProcess, mitmdump: ProxyFactory) -> None:
    devservers.configure(delay=30)  # far beyond the timeout; the answer never matters
    proxy = mitmdump(devservers.backend_toml(token_timeout=0.5))
    with proxy.client(timeout=20) as client:
        answer = client.get(f"{devservers.backend_url}/things")
    assert answer.status_code == 502
    assert "token endpoint timed out after 0.5 s" in answer.json()["detail"]
    assert devservers.stats()["token_requests_arrived"] == 1
    assert devservers.backend_requests() == []


def test_token_proxy_carries_the_token_call(
    devservers_factory: DevServersFactory, mitmdump: ProxyFactory
) -> None:
    servers = devservers_factory()
    # A second mitmdump as the forward proxy for token calls; its own config names no backend
    # the test uses, and it prints each flow it carries.
    forward = mitmdump(
        toml_backend(
            name="unused",
            hosts=["unused.invalid"],
            token_url=servers.token_url,
            client_id=DEMO_CLIENT_ID,
            client_secret=DEMO_CLIENT_SECRET,
        )
    )
    proxy = mitmdump(servers.backend_toml(token_proxy=forward.url))
    with proxy.client() as client:
        answer = client.get(f"{servers.backend_url}/things")
    assert answer.status_code == 200, answer.text
    forward.wait_for_output(rf"POST {servers.token_url}")
    assert servers.token_requests() == 1
    assert f"GET {servers.backend_url}/things" not in forward.output()  # only the token call
