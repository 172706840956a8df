"""`issuer` instead of `token_url`: the real mitmdump finds the token endpoint in the devservers'
metadata (RFC 8414, then OpenID Connect Discovery), refuses metadata naming another issuer with a
502 problem that says where it looked, and uses the mTLS alias for tls_client_auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.key_material import issue_client_cert
from tests.support.key_material import make_key_pair
from tests.support.key_material import tls_client_auth
from tests.support.proxies import ProxyFactory

RFC8414 = "/.well-known/oauth-authorization-server"
OPENID = "/.well-known/openid-configuration"


def backend(servers: DevServersProcess, **fields: Any) -> str:
    """`servers.backend_toml` with `issuer` in place of `token_url` (plain http on the
    devservers: allowed because it is loopback); a None field is left out."""
    return servers.backend_toml(token_url=None, issuer=servers.issuer, **fields)


def test_rfc8414_metadata_gives_the_token_endpoint(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(backend(devservers))
    answers = proxy.get_each(f"{devservers.backend_url}/things/{i}" for i in range(2))
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    assert devservers.metadata_log() == [{"path": RFC8414, "status": 200}]
    (entry,) = devservers.token_log()
    assert (entry["path"], entry["auth"], entry["status"]) == ("/token", "basic", 200)


def test_openid_configuration_when_rfc8414_is_missing(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(metadata_rfc8414=False)
    proxy = mitmdump(backend(devservers))
    with proxy.client() as client:
        answer = client.get(f"{devservers.backend_url}/things")
    assert answer.status_code == 200, answer.text
    assert devservers.metadata_log() == [
        {"path": RFC8414, "status": 404},
        {"path": OPENID, "status": 200},
    ]
    assert devservers.token_requests() == 1


def test_metadata_of_another_issuer_is_refused_with_a_problem(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(metadata_issuer="https://impostor.example")
    proxy = mitmdump(backend(devservers))
    with proxy.client() as client:
        answer = client.post(f"{devservers.backend_url}/things", content=b"must not arrive")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["backend"] == "api"
    detail = problem["detail"]
    assert "discovery failed" in detail
    assert f"{devservers.issuer}{RFC8414}" in detail  # names the URLs it tried
    assert f"{devservers.issuer}{OPENID}" in detail
    assert "https://impostor.example" in detail
    assert len(devservers.metadata_log()) == 2
    assert devservers.token_requests() == 0  # never asked the impostor's endpoint
    assert devservers.backend_requests() == []


def test_missing_metadata_is_a_problem_naming_both_urls(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(metadata_rfc8414=False, metadata_openid=False)
    proxy = mitmdump(backend(devservers))
    with proxy.client() as client:
        answer = client.get(f"{devservers.backend_url}/things")
    assert answer.status_code == 502
    detail = answer.json()["detail"]
    assert f"{devservers.issuer}{RFC8414}: HTTP 404" in detail
    assert f"{devservers.issuer}{OPENID}: HTTP 404" in detail
    assert devservers.backend_requests() == []


def test_private_key_jwt_with_the_issuer_as_audience(
    devservers_factory: DevServersFactory, mitmdump: ProxyFactory, tmp_path: Path
) -> None:
    pair = make_key_pair(tmp_path, "ec")
    servers = devservers_factory(clients={"jwt": {"public_key": pair.public_key.read_text()}})
    proxy = mitmdump(
        backend(
            servers,
            client_id="jwt",
            client_secret=None,
            auth_method="private_key_jwt",
            private_key_file=str(pair.private_key),
            assertion_audience="issuer",
        )
    )
    with proxy.client() as client:
        answer = client.get(f"{servers.backend_url}/things")
    assert answer.status_code == 200, answer.text
    (entry,) = servers.token_log()
    assert entry["auth"] == "private_key_jwt"
    assert entry["assertion"]["aud"] == servers.issuer


def test_tls_client_auth_uses_the_mtls_endpoint_alias(
    devservers_factory: DevServersFactory,
    mitmdump: ProxyFactory,
    tls_ca: TlsFiles,
    tmp_path: Path,
) -> None:
    servers = devservers_factory(
        clients={"mtls-client": {"cert_cn": "mtls-client"}}, token_tls=True, client_ca=True
    )
    cert = issue_client_cert(tls_ca, tmp_path, "mtls-client")
    # the issuer is https: metadata is fetched with token_ca_bundle too
    proxy = mitmdump(backend(servers, client_secret=None, **tls_client_auth(tls_ca, cert)))
    with proxy.client() as client:
        answer = client.get(f"{servers.backend_url}/things")
    assert answer.status_code == 200, answer.text
    (entry,) = servers.token_log()
    assert (entry["path"], entry["auth"], entry["cert_cn"]) == (
        "/mtls/token",
        "tls_client_auth",
        "mtls-client",
    )
