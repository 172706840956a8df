"""Certificate-bound tokens (RFC 8705 §3) through the real mitmdump: the token server binds the
token to the client certificate of the token call, the backend serves it only on a connection
that presents that certificate; `certificate_bound = true` makes the proxy present it to that
backend, and to no other server."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import pytest

from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.key_material import ClientCert
from tests.support.key_material import issue_client_cert
from tests.support.key_material import tls_client_auth
from tests.support.proxies import ProxyFactory

CLIENT = "bound-client"


@pytest.fixture
def bound_servers(devservers_factory: DevServersFactory) -> DevServersProcess:
    """Token server on HTTPS asking for client certificates, binding this client's tokens to
    them; an HTTPS backend asking for them too."""
    clients = {CLIENT: {"cert_cn": CLIENT, "certificate_bound": "true"}}
    return devservers_factory(
        clients=clients, tls=True, token_tls=True, client_ca=True, backend_client_ca=True
    )


@pytest.fixture
def other_servers(devservers_factory: DevServersFactory) -> DevServersProcess:
    """Another HTTPS backend that asks for client certificates, with an ordinary client."""
    return devservers_factory(tls=True, backend_client_ca=True)


@pytest.fixture
def cert(tls_ca: TlsFiles, tmp_path: Path) -> ClientCert:
    return issue_client_cert(tls_ca, tmp_path, CLIENT)


def fingerprint(cert: ClientCert) -> str:
    pem = (
        cert.cert.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def config(servers: DevServersProcess, tls: TlsFiles, cert: ClientCert, *, bound: bool) -> str:
    return servers.backend_toml(
        "bound-api",
        **tls_client_auth(tls, cert, CLIENT),
        client_secret=None,
        certificate_bound=bound,
    )


def test_the_backend_gets_the_certificate_its_token_is_bound_to(
    bound_servers: DevServersProcess,
    other_servers: DevServersProcess,
    mitmdump: ProxyFactory,
    tls_ca: TlsFiles,
    cert: ClientCert,
) -> None:
    text = config(bound_servers, tls_ca, cert, bound=True) + other_servers.backend_toml("other-api")
    proxy = mitmdump(text)
    with proxy.client() as client:
        bound = client.get(f"{bound_servers.backend_url}/things")
        other = client.get(f"{other_servers.backend_url}/things")
    assert bound.status_code == 200, bound.text
    assert other.status_code == 200, other.text
    (token,) = bound_servers.token_log()
    assert (token["auth"], token["bound"], token["cert_sha256"]) == (
        "tls_client_auth",
        True,
        fingerprint(cert),
    )
    (seen,) = bound_servers.backend_requests()
    assert seen["cert_sha256"] == fingerprint(cert)
    (elsewhere,) = other_servers.backend_requests()
    assert elsewhere["cert_sha256"] is None  # only the bound backend's connections get it


def test_without_it_the_bound_token_is_refused(
    bound_servers: DevServersProcess, mitmdump: ProxyFactory, tls_ca: TlsFiles, cert: ClientCert
) -> None:
    """What certificate_bound is for: the same token, on a connection without the certificate."""
    proxy = mitmdump(config(bound_servers, tls_ca, cert, bound=False))
    with proxy.client() as client:
        answer = client.get(f"{bound_servers.backend_url}/things")
    assert answer.status_code == 401
    assert answer.json()["error"] == "certificate mismatch"
    assert all(seen["cert_sha256"] is None for seen in bound_servers.backend_requests())
