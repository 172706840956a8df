"""auth_method = "client_assertion" through the real mitmdump: the platform's JWT, read from its
file for every token request (here the test plays the platform, writing and rotating it), is
the client's only proof; no secret anywhere. The devservers verify it as workload identity
federation does: the registered platform's signature, issuer, workload (sub) and audience."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import toml_backend
from tests.support.key_material import KeyPair
from tests.support.key_material import make_key_pair
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory

CLIENT_ID = "orders"
PLATFORM = "https://kubernetes.default.svc.cluster.local"
WORKLOAD = "system:serviceaccount:orders:orders-api"
AUDIENCE = "api://AzureADTokenExchange"


@pytest.fixture
def key(tmp_path: Path) -> KeyPair:
    return make_key_pair(tmp_path, "ec")


@pytest.fixture
def servers(devservers_factory: DevServersFactory, key: KeyPair) -> DevServersProcess:
    federated = {"federated_issuer": PLATFORM, "federated_subject": WORKLOAD}
    federated |= {"federated_audience": AUDIENCE, "federated_key": key.public_key.read_text()}
    return devservers_factory(clients={CLIENT_ID: federated})


def write_assertion(path: Path, key: KeyPair, *, lifetime: float = 3600) -> dict[str, Any]:
    """What the platform does: a fresh signed JWT, swapped in atomically. Its claims."""
    now = int(time.time())
    claims = {"iss": PLATFORM, "sub": WORKLOAD, "aud": AUDIENCE}
    claims |= {"iat": now, "exp": int(now + lifetime), "jti": uuid.uuid4().hex}
    pem = key.private_key.read_bytes()
    staged = path.with_suffix(".new")
    staged.write_text(jwt.encode(claims, pem, algorithm="ES256", headers={"kid": "platform-1"}))
    os.replace(staged, path)
    return claims


def proxy_for(mitmdump: ProxyFactory, servers: DevServersProcess, path: Path) -> Proxy:
    return mitmdump(
        toml_backend(
            name="api",
            hosts=[servers.backend_host],
            token_url=servers.token_url,
            client_id=CLIENT_ID,
            auth_method="client_assertion",
            client_assertion_file=str(path),
        )
    )


def test_the_platforms_assertion_gets_the_token_and_its_rotation_the_next(
    servers: DevServersProcess, mitmdump: ProxyFactory, key: KeyPair, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    first = write_assertion(path, key)
    proxy = proxy_for(mitmdump, servers, path)
    with proxy.client() as client:
        assert client.get(f"{servers.backend_url}/things").status_code == 200
        second = write_assertion(path, key)  # rotated, as kubelet does
        servers.revoke()  # the backend refuses the token: a new one, with the new assertion
        assert client.get(f"{servers.backend_url}/things").status_code == 200
    log = servers.token_log()
    assert [entry["status"] for entry in log] == [200, 200]
    assert [entry["auth"] for entry in log] == ["federated"] * 2
    assert [entry["assertion"]["jti"] for entry in log] == [first["jti"], second["jti"]]
    assert all("client_secret" not in entry["form_keys"] for entry in log)
    assert path.read_text() not in proxy.output()


@pytest.mark.parametrize("broken", ["expired", "unreadable"])
def test_an_assertion_that_cannot_serve_is_a_502_and_one_line(
    servers: DevServersProcess, mitmdump: ProxyFactory, key: KeyPair, tmp_path: Path, broken: str
) -> None:
    path = tmp_path / "token"
    write_assertion(path, key, lifetime=-120 if broken == "expired" else 3600)
    assertion = path.read_text()
    proxy = proxy_for(mitmdump, servers, path)
    if broken == "unreadable":
        path.unlink()  # the platform's volume went away after start-up
    with proxy.client() as client:
        answers = [client.get(f"{servers.backend_url}/things") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [502] * 3
    assert answers[0].headers["content-type"] == "application/problem+json"
    detail = answers[0].json()["detail"]
    assert str(path) in detail
    assert ("expired at" if broken == "expired" else "cannot read") in detail
    said = [line for line in proxy.output().splitlines() if str(path) in line]
    assert len(said) == 1, said
    assert "Traceback" not in proxy.output()
    assert assertion not in proxy.output()
    assert assertion not in answers[0].text
    assert servers.token_log() == []  # nothing was sent that the server must refuse
