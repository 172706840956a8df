"""HTTPS through CONNECT: clients trust the proxy's CA, mitmproxy trusts the backend's test CA."""

from __future__ import annotations

import json

import pytest
from harness import DEMO_CLIENT_ID
from harness import DEMO_CLIENT_SECRET
from harness import DevServersProcess
from harness import TlsFiles
from harness import toml_backend
from procs import curl
from proxies import MitmdumpFactory


def https_config(servers: DevServersProcess, host: str) -> str:
    return toml_backend(
        name="secure",
        hosts=[host],
        token_url=servers.token_url,
        client_id=DEMO_CLIENT_ID,
        client_secret=DEMO_CLIENT_SECRET,
    )


def backend_port(servers: DevServersProcess) -> str:
    return servers.backend_host.rsplit(":", 1)[1]


def test_https_through_connect_with_httpx(
    devservers_tls: DevServersProcess, mitmdump: MitmdumpFactory
) -> None:
    port = backend_port(devservers_tls)
    proxy = mitmdump(https_config(devservers_tls, f"localhost:{port}"))
    with proxy.client() as client:
        answers = [client.post(f"https://localhost:{port}/pay", content=b"{}") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert devservers_tls.token_requests() == 1
    assert all(len(r["authorization"]) == 1 for r in devservers_tls.backend_requests())


def test_https_through_connect_with_curl(
    devservers_tls: DevServersProcess, mitmdump: MitmdumpFactory
) -> None:
    port = backend_port(devservers_tls)
    proxy = mitmdump(https_config(devservers_tls, f"localhost:{port}"))
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
    devservers_tls: DevServersProcess, mitmdump: MitmdumpFactory, strategy: str
) -> None:
    devservers_tls.configure(down=True)
    port = backend_port(devservers_tls)
    proxy = mitmdump(https_config(devservers_tls, f"localhost:{port}"), lazy=strategy == "lazy")
    with proxy.client() as client:
        answer = client.post(f"https://localhost:{port}/pay", content=b"secret order")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["backend"] == "secure"
    assert devservers_tls.backend_requests() == []


def test_https_backend_on_another_port_is_not_matched(
    devservers_tls: DevServersProcess, mitmdump: MitmdumpFactory, tls_ca: TlsFiles
) -> None:
    """An entry without a port means 443 for https: the test backend's port does not match."""
    port = backend_port(devservers_tls)
    proxy = mitmdump(https_config(devservers_tls, "localhost"))
    with proxy.client() as client:
        answer = client.get(f"https://localhost:{port}/pay")
    assert answer.status_code == 401
    assert devservers_tls.token_requests() == 0
    assert tls_ca.ca_cert.exists()
