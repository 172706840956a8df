"""HTTPS through CONNECT: clients trust the proxy's CA, mitmproxy trusts the backend's test CA."""

from __future__ import annotations

import json

import pytest

from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.procs import curl
from tests.support.proxies import ProxyFactory


def backend_port(servers: DevServersProcess) -> str:
    return servers.backend_host.rsplit(":", 1)[1]


def test_https_through_connect_with_httpx(
    devservers_tls: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    port = backend_port(devservers_tls)
    proxy = mitmdump(devservers_tls.backend_toml("secure", hosts=[f"localhost:{port}"]))
    with proxy.client() as client:
        answers = [client.post(f"https://localhost:{port}/pay", content=b"{}") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert devservers_tls.token_requests() == 1
    assert all(len(r["authorization"]) == 1 for r in devservers_tls.backend_requests())


def test_https_through_connect_with_curl(
    devservers_tls: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    port = backend_port(devservers_tls)
    proxy = mitmdump(devservers_tls.backend_toml("secure", hosts=[f"localhost:{port}"]))
    done = curl(
        "--cacert", str(proxy.ca_cert), "-x", proxy.url, "-H", "Authorization: Basic Zm9vOmJhcg==",
        f"https://localhost:{port}/pay",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    (received,) = devservers_tls.backend_requests()
    assert received["authorization"][0].startswith("Bearer ")


@pytest.mark.parametrize("strategy", ["eager", "lazy"])
def test_https_no_token_means_502_and_no_request_reaches_the_backend(
    devservers_tls: DevServersProcess, mitmdump: ProxyFactory, strategy: str
) -> None:
    devservers_tls.configure(down=True)
    port = backend_port(devservers_tls)
    proxy = mitmdump(
        devservers_tls.backend_toml("secure", hosts=[f"localhost:{port}"]), lazy=strategy == "lazy"
    )
    with proxy.client() as client:
        answer = client.post(f"https://localhost:{port}/pay", content=b"secret order")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["backend"] == "secure"
    assert devservers_tls.backend_requests() == []


def test_https_backend_on_another_port_is_not_matched(
    devservers_tls: DevServersProcess, mitmdump: ProxyFactory, tls_ca: TlsFiles
) -> None:
    """An entry without a port means 443 for https: the test backend's port does not match."""
    port = backend_port(devservers_tls)
    proxy = mitmdump(devservers_tls.backend_toml("secure", hosts=["localhost"]))
    with proxy.client() as client:
        answer = client.get(f"https://localhost:{port}/pay")
    assert answer.status_code == 401
    assert devservers_tls.token_requests() == 0
    assert tls_ca.ca_cert.exists()
