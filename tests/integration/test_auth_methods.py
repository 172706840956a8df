"""Every client authentication method end to end through the real mitmdump: the caller gets 200
from the backend, and the token server's log shows how the proxy authenticated.

Keys are made fresh per test (private_key_jwt), client certificates come from the session's
test CA (tls_client_auth), and the devservers verify what a real server would: signatures,
iss = sub = client id, aud, exp, a jti never used before, the certificate's CN.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.devservers import DEMO_CLIENT_ID
from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.devservers import toml_backend
from tests.support.key_material import ClientCert
from tests.support.key_material import KeyPair
from tests.support.key_material import issue_client_cert
from tests.support.key_material import make_key_pair
from tests.support.key_material import tls_client_auth
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory

RAW_SECRET = "Unreserved-only_secret.1~"  # form encoding leaves it as is
LITERAL_SECRET = "pa!ss*word(1)'"  # form encoding changes it: %21 %2A %28 %29 %27
HMAC_SECRET = "an HMAC secret of at least thirty-two bytes: + % &"


@dataclass(frozen=True)
class Keys:
    rsa: KeyPair
    ec: KeyPair


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(make_key_pair(tmp_path, "rsa"), make_key_pair(tmp_path, "ec"))


@pytest.fixture
def servers(devservers_factory: DevServersFactory, keys: Keys) -> DevServersProcess:
    return devservers_factory(
        clients={
            DEMO_CLIENT_ID: DEMO_CLIENT_SECRET,
            "raw-client": RAW_SECRET,
            "literal-client": LITERAL_SECRET,
            "hs-client": HMAC_SECRET,
            "rs-client": {"public_key": keys.rsa.public_key.read_text()},
            "es-client": {"public_key": keys.ec.public_key.read_text()},
        }
    )


def backend(servers: DevServersProcess, **fields: Any) -> str:
    base = {"name": "api", "hosts": [servers.backend_host], "token_url": servers.token_url}
    return toml_backend(**base, **fields)


def get_ok(proxy: Proxy, servers: DevServersProcess, path: str = "/things") -> dict[str, Any]:
    with proxy.client() as client:
        answer = client.get(f"{servers.backend_url}{path}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# name -> (config fields, what the token log must show)
METHODS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "client_secret_basic": (
        {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET},
        {"auth": "basic", "client_id": DEMO_CLIENT_ID},
    ),
    "basic_encoding_raw": (
        {"client_id": "raw-client", "client_secret": RAW_SECRET, "basic_encoding": "raw"},
        {"auth": "basic", "client_id": "raw-client"},
    ),
    "client_secret_post": (
        {
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "auth_method": "client_secret_post",
        },
        {"auth": "post", "client_id": DEMO_CLIENT_ID},
    ),
    "client_secret_jwt": (
        {
            "client_id": "hs-client",
            "client_secret": HMAC_SECRET,
            "auth_method": "client_secret_jwt",
        },
        {"auth": "client_secret_jwt", "client_id": "hs-client", "jwt_alg": "HS256"},
    ),
    "private_key_jwt_rs256": (
        {"client_id": "rs-client", "auth_method": "private_key_jwt", "key_id": "rsa-key-1"},
        {"auth": "private_key_jwt", "client_id": "rs-client", "jwt_alg": "RS256"},
    ),
    "private_key_jwt_ps256": (
        {"client_id": "rs-client", "auth_method": "private_key_jwt", "signing_alg": "PS256"},
        {"auth": "private_key_jwt", "client_id": "rs-client", "jwt_alg": "PS256"},
    ),
    "private_key_jwt_es256": (
        {"client_id": "es-client", "auth_method": "private_key_jwt", "key_id": "ec-key-1"},
        {"auth": "private_key_jwt", "client_id": "es-client", "jwt_alg": "ES256"},
    ),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_auth_method_gets_the_caller_a_200(
    method: str, servers: DevServersProcess, mitmdump: ProxyFactory, keys: Keys
) -> None:
    fields, expected = METHODS[method]
    if fields.get("auth_method") == "private_key_jwt":
        pair = keys.ec if fields["client_id"] == "es-client" else keys.rsa
        fields = {**fields, "private_key_file": str(pair.private_key)}
    proxy = mitmdump(backend(servers, **fields))
    first = get_ok(proxy, servers)
    servers.revoke()  # the backend now refuses the token: the proxy fetches another and replays
    second = get_ok(proxy, servers)
    log = servers.token_log()
    assert [entry["status"] for entry in log] == [200, 200]
    for entry in log:
        assert {key: entry.get(key) for key in expected} == expected
        assert entry["grant_type"] == "client_credentials"
        assert entry["path"] == "/token"
    assert [first["token_id"], second["token_id"]] == [entry["token_id"] for entry in log]
    if "jwt_alg" in expected:
        assert log[0]["jwt_kid"] == fields.get("key_id")
        assert log[0]["jwt_typ"] in (None, "JWT")
        claims = [entry["assertion"] for entry in log]
        assert all(c["aud"] == servers.token_url for c in claims)  # the token endpoint
        assert all(c["iss"] == c["sub"] == expected["client_id"] for c in claims)
        assert claims[0]["jti"] != claims[1]["jti"]  # fresh every time (a reuse is refused)
        assert all(0 < c["exp"] - c["iat"] <= 300 for c in claims)  # short-lived
        assert "client_secret" not in log[0]["form_keys"]
    secrets = [DEMO_CLIENT_SECRET, HMAC_SECRET, RAW_SECRET]
    assert not any(secret in proxy.output() for secret in secrets)


def test_basic_encoding_is_what_the_config_says_no_probing(
    servers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    """A server that takes Basic credentials literally: raw works, the RFC encoding is refused,
    and the proxy does not try the other style behind the user's back."""
    servers.configure(basic_decode=False)
    fields = {"client_id": "literal-client", "client_secret": LITERAL_SECRET}
    raw = mitmdump(backend(servers, **fields, basic_encoding="raw"))
    get_ok(raw, servers)
    form = mitmdump(backend(servers, **fields))  # basic_encoding = "form", the default
    with form.client() as client:
        refused = client.get(f"{servers.backend_url}/things")
    assert refused.status_code == 502
    assert refused.json()["oauth_error"] == "invalid_client"
    assert [(e["auth"], e["status"]) for e in servers.token_log()] == [
        ("basic", 200),
        ("basic", 401),
    ]
    assert len(servers.backend_requests()) == 1  # only the raw proxy's request got through


@pytest.fixture
def mtls_servers(devservers_factory: DevServersFactory) -> DevServersProcess:
    """Token server on HTTPS (test CA) asking for client certificates from the test CA."""
    clients = {"mtls-client": {"cert_cn": "mtls-client"}}
    return devservers_factory(clients=clients, token_tls=True, client_ca=True)


def mtls_backend(servers: DevServersProcess, tls: TlsFiles, cert_dir: Path, cn: str) -> str:
    return backend(servers, **tls_client_auth(tls, issue_client_cert(tls, cert_dir, cn)))


def test_tls_client_auth(
    mtls_servers: DevServersProcess, mitmdump: ProxyFactory, tls_ca: TlsFiles, tmp_path: Path
) -> None:
    assert mtls_servers.token_url.startswith("https://")
    proxy = mitmdump(mtls_backend(mtls_servers, tls_ca, tmp_path, "mtls-client"))
    answer = get_ok(proxy, mtls_servers)
    (entry,) = mtls_servers.token_log()
    assert (entry["auth"], entry["client_id"], entry["status"]) == (
        "tls_client_auth",
        "mtls-client",
        200,
    )
    assert entry["cert_cn"] == "mtls-client"
    assert entry["form_keys"] == ["client_id", "grant_type"]  # no secret, no assertion
    assert entry["token_id"] == answer["token_id"]


def test_tls_client_auth_with_a_certificate_of_another_client_is_refused(
    mtls_servers: DevServersProcess, mitmdump: ProxyFactory, tls_ca: TlsFiles, tmp_path: Path
) -> None:
    proxy = mitmdump(mtls_backend(mtls_servers, tls_ca, tmp_path, "someone-else"))
    with proxy.client() as client:
        answer = client.get(f"{mtls_servers.backend_url}/things")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["oauth_error"] == "invalid_client"
    (entry,) = mtls_servers.token_log()
    assert (entry["auth"], entry["cert_cn"], entry["status"]) == (
        "tls_client_auth",
        "someone-else",
        401,
    )
    assert mtls_servers.backend_requests() == []


def test_a_client_certificate_rotated_in_place_is_used_for_the_next_token(
    mtls_servers: DevServersProcess, mitmdump: ProxyFactory, tls_ca: TlsFiles, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"
    for directory, in_use in ((tmp_path / "old", True), (tmp_path / "new", False)):
        directory.mkdir()
        issued = issue_client_cert(tls_ca, directory, "mtls-client")
        if in_use:
            cert.write_bytes(issued.cert.read_bytes())
            key.write_bytes(issued.key.read_bytes())
    new_cert = tmp_path / "new" / "mtls-client-cert.pem"
    new_key = tmp_path / "new" / "mtls-client-key.pem"
    config = backend(mtls_servers, **tls_client_auth(tls_ca, ClientCert(cert, key)))
    proxy = mitmdump(config, "--set", "termlog_verbosity=debug")
    get_ok(proxy, mtls_servers)
    for source, target in ((new_key, key), (new_cert, cert)):
        staged = target.with_suffix(".new")
        staged.write_bytes(source.read_bytes())
        os.replace(staged, target)
    # Either outcome of the watcher's next look at the files: applied, or judged unchanged.
    proxy.wait_for_output(r"oauth2: (reloaded|re-read .* configuration unchanged)", 15)
    mtls_servers.revoke()  # the next request needs a new token
    get_ok(proxy, mtls_servers)
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(new_cert.read_text())).hexdigest()
    assert mtls_servers.token_log()[-1]["cert_sha256"] == fingerprint
