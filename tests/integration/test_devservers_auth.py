"""Fast checks of the devservers' client authentication, metadata and request log, over real
loopback HTTP(S) without a proxy: the fake authorization server must refuse what a real one
refuses, or the end-to-end tests through the proxy would prove nothing."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trustme

from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.key_material import KeyPair
from tests.support.key_material import issue_client_cert
from tests.support.key_material import make_key_pair
from tests.support.procs import subprocess_env

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT = {"grant_type": "client_credentials"}
HMAC_SECRET = "an HMAC secret of at least thirty-two bytes"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


@pytest.fixture
def rsa_pair(tmp_path: Path) -> KeyPair:
    return make_key_pair(tmp_path, "rsa")


@pytest.fixture
def jwt_servers(devservers_factory: DevServersFactory, rsa_pair: KeyPair) -> DevServersProcess:
    return devservers_factory(
        clients={
            "hs-client": HMAC_SECRET,
            "rs-client": {"public_key": rsa_pair.public_key.read_text()},
        }
    )


def claims(client_id: str, audience: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60}
    base["jti"] = uuid.uuid4().hex
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def assertion_form(token: str, client_id: str | None = None) -> dict[str, str]:
    form = {**GRANT, "client_assertion_type": JWT_BEARER, "client_assertion": token}
    return form if client_id is None else {**form, "client_id": client_id}


def test_client_secret_jwt_and_replay(jwt_servers: DevServersProcess, http: httpx.Client) -> None:
    token = jwt.encode(claims("hs-client", jwt_servers.token_url), HMAC_SECRET, "HS256")
    first = http.post(jwt_servers.token_url, data=assertion_form(token, "hs-client"))
    assert first.status_code == 200, first.text
    replay = http.post(jwt_servers.token_url, data=assertion_form(token, "hs-client"))
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert "jti" in replay.json()["error_description"]
    ok, replayed = jwt_servers.token_log()
    assert (ok["auth"], ok["client_id"], ok["jwt_alg"], ok["status"]) == (
        "client_secret_jwt",
        "hs-client",
        "HS256",
        200,
    )
    assert ok["assertion"]["aud"] == jwt_servers.token_url
    assert "client_assertion" not in ok["params"]
    assert replayed["status"] == 401


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "https://elsewhere.example/token"},
        {"exp": int(time.time()) - 120},
        {"exp": None},
        {"jti": None},
        {"sub": "someone-else"},
        {"iss": "someone-else"},
    ],
    ids=["wrong-aud", "expired", "no-exp", "no-jti", "sub-not-client", "iss-not-client"],
)
def test_bad_assertions_are_invalid_client(
    jwt_servers: DevServersProcess, http: httpx.Client, changes: dict[str, Any]
) -> None:
    token = jwt.encode(claims("hs-client", jwt_servers.token_url, **changes), HMAC_SECRET)
    response = http.post(jwt_servers.token_url, data=assertion_form(token, "hs-client"))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


def test_private_key_jwt_with_kid_and_issuer_audience(
    jwt_servers: DevServersProcess, http: httpx.Client, rsa_pair: KeyPair, tmp_path: Path
) -> None:
    key = rsa_pair.private_key.read_text()
    token = jwt.encode(claims("rs-client", jwt_servers.issuer), key, "PS256", {"kid": "k1"})
    response = http.post(jwt_servers.token_url, data=assertion_form(token))  # no client_id
    assert response.status_code == 200, response.text
    (entry,) = jwt_servers.token_log()
    assert (entry["auth"], entry["client_id"]) == ("private_key_jwt", "rs-client")
    assert (entry["jwt_alg"], entry["jwt_kid"]) == ("PS256", "k1")
    assert entry["assertion"]["aud"] == jwt_servers.issuer

    stranger = make_key_pair(tmp_path, "ec").private_key.read_text()
    forged = jwt.encode(claims("rs-client", jwt_servers.token_url), stranger, "ES256")
    assert http.post(jwt_servers.token_url, data=assertion_form(forged)).status_code == 401
    unsigned = jwt.encode(claims("rs-client", jwt_servers.token_url), "", "none")
    assert http.post(jwt_servers.token_url, data=assertion_form(unsigned)).status_code == 401
    hs_for_rs = jwt.encode(claims("rs-client", jwt_servers.token_url), HMAC_SECRET, "HS256")
    assert http.post(jwt_servers.token_url, data=assertion_form(hs_for_rs)).status_code == 401


def test_two_methods_at_once_are_refused(
    jwt_servers: DevServersProcess, http: httpx.Client
) -> None:
    token = jwt.encode(claims("hs-client", jwt_servers.token_url), HMAC_SECRET)
    basic = "Basic " + base64.b64encode(f"hs-client:{HMAC_SECRET}".encode()).decode()
    response = http.post(
        jwt_servers.token_url, data=assertion_form(token), headers={"Authorization": basic}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_the_jwt_bearer_grant(
    jwt_servers: DevServersProcess, http: httpx.Client, rsa_pair: KeyPair, tmp_path: Path
) -> None:
    """RFC 7523 §2.1: an assertion signed with the issuer's registered key is the grant, with
    no client authentication; Google's kind (no `sub`, the scope as a claim) too."""
    key = rsa_pair.private_key.read_text()
    url = jwt_servers.token_url

    def grant(token: str) -> httpx.Response:
        return http.post(url, data={"grant_type": JWT_BEARER_GRANT, "assertion": token})

    google = claims("rs-client", url, sub=None, jti=None, scope="read")
    answer = grant(jwt.encode(google, key, "RS256"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "read"
    (entry,) = jwt_servers.token_log()
    assert (entry["auth"], entry["client_id"]) == ("none", "rs-client")
    assert "assertion" not in entry["params"]
    stranger = make_key_pair(tmp_path, "ec").private_key.read_text()
    refused = [
        jwt.encode(claims("rs-client", url), stranger, "ES256"),
        jwt.encode(claims("rs-client", "https://elsewhere.example/token"), key, "RS256"),
        jwt.encode(claims("rs-client", url, exp=int(time.time()) - 120), key, "RS256"),
        jwt.encode(claims("nobody", url), key, "RS256"),
        jwt.encode(claims("hs-client", url), HMAC_SECRET, "HS256"),
        "not a JWT",
    ]
    for token in refused:
        answer = grant(token)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant"), token
    no_assertion = http.post(url, data={"grant_type": JWT_BEARER_GRANT})
    assert no_assertion.json()["error"] == "invalid_request"


PLATFORM = "https://kubernetes.default.svc.cluster.local"
WORKLOAD = "system:serviceaccount:orders:orders-api"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


def test_a_federated_workloads_assertion_may_be_presented_until_it_expires(
    devservers_factory: DevServersFactory, rsa_pair: KeyPair, http: httpx.Client
) -> None:
    """Workload identity federation: the platform's token for the registered workload, for the
    registered audience, signed with the platform's key; not one-time, as a platform's is not."""
    platform_key = rsa_pair.public_key.read_text()
    federated = {
        "federated_issuer": PLATFORM,
        "federated_subject": WORKLOAD,
        "federated_audience": EXCHANGE_AUDIENCE,
        "federated_key": platform_key,
    }
    servers = devservers_factory(clients={"orders": federated})
    private = rsa_pair.private_key.read_bytes()

    def platform_token(**changes: Any) -> str:
        base = claims(WORKLOAD, EXCHANGE_AUDIENCE, **{"iss": PLATFORM, **changes})
        return jwt.encode(base, private, "RS256")

    token = platform_token()
    for _ in range(2):
        answer = http.post(servers.token_url, data=assertion_form(token, "orders"))
        assert answer.status_code == 200, answer.text
    refused = {
        "another workload": platform_token(sub="system:serviceaccount:orders:other"),
        "another platform": platform_token(iss="https://evil.example"),
        "another audience": platform_token(aud=servers.token_url),
        "expired": platform_token(exp=int(time.time()) - 10),
    }
    for why, bad in refused.items():
        answer = http.post(servers.token_url, data=assertion_form(bad, "orders"))
        assert answer.status_code == 401, why
        assert answer.json()["error"] == "invalid_client", why
    log = servers.token_log()
    assert [(entry["auth"], entry["status"]) for entry in log] == [("federated", 200)] * 2 + [
        ("federated", 401)
    ] * len(refused)


def test_request_log_has_params_and_headers(
    devservers: DevServersProcess, http: httpx.Client
) -> None:
    form = [
        ("grant_type", "client_credentials"),
        ("client_id", "demo-client"),
        ("client_secret", "demo secret with : % + & chars"),
        ("audience", "https://api.example"),
        ("resource", "https://a.example/"),
        ("resource", "https://b.example/"),
        ("tenant", "acme"),
    ]
    body = urllib.parse.urlencode(form)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Tenant": "acme"}
    response = http.post(devservers.token_url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    (entry,) = devservers.token_log()
    assert entry["audience"] == "https://api.example"
    assert entry["resource"] == ["https://a.example/", "https://b.example/"]
    assert entry["params"]["tenant"] == ["acme"]
    assert "client_secret" not in entry["params"]
    assert entry["headers"]["x-tenant"] == ["acme"]

    twice = http.post(devservers.token_url, content=body + "&tenant=other", headers=headers)
    assert twice.status_code == 400  # only resource may repeat


def test_basic_decode_knob(devservers_factory: DevServersFactory, http: httpx.Client) -> None:
    servers = devservers_factory(clients={"raw": "pa!ss*word"})
    encoded = "Basic " + base64.b64encode(b"raw:pa%21ss%2Aword").decode()
    literal = "Basic " + base64.b64encode(b"raw:pa!ss*word").decode()
    assert http.post(servers.token_url, data=GRANT, headers={"Authorization": encoded}).is_success
    servers.configure(basic_decode=False)
    assert http.post(servers.token_url, data=GRANT, headers={"Authorization": literal}).is_success
    refused = http.post(servers.token_url, data=GRANT, headers={"Authorization": encoded})
    assert refused.status_code == 401


def test_metadata_and_its_knobs(devservers: DevServersProcess, http: httpx.Client) -> None:
    rfc8414 = f"{devservers.issuer}/.well-known/oauth-authorization-server"
    openid = f"{devservers.issuer}/.well-known/openid-configuration"
    for url in (rfc8414, openid):
        document = http.get(url).json()
        assert document["issuer"] == devservers.issuer
        assert document["token_endpoint"] == devservers.token_url
        assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
        assert "mtls_endpoint_aliases" not in document
    devservers.configure(metadata_rfc8414=False, metadata_issuer="https://wrong.example")
    assert http.get(rfc8414).status_code == 404
    assert http.get(openid).json()["issuer"] == "https://wrong.example"
    assert [e["status"] for e in devservers.metadata_log()] == [200, 200, 404, 200]


@pytest.fixture
def mtls_servers(devservers_factory: DevServersFactory) -> DevServersProcess:
    clients = {"mtls-client": {"cert_cn": "mtls-client"}, "pinned": {"cert_sha256": "00" * 32}}
    return devservers_factory(clients=clients, token_tls=True, client_ca=True)


def _mtls_client(tls: TlsFiles, cert: Path | None = None, key: Path | None = None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return httpx.Client(trust_env=False, timeout=10, verify=context)


def test_tls_client_auth(mtls_servers: DevServersProcess, tls_ca: TlsFiles, tmp_path: Path) -> None:
    servers = mtls_servers
    assert servers.token_url.startswith("https://127.0.0.1:")
    document = servers.admin.get(f"{servers.issuer}/.well-known/openid-configuration").json()
    alias = document["mtls_endpoint_aliases"]["token_endpoint"]
    assert alias == f"{servers.issuer}/mtls/token"
    good = issue_client_cert(tls_ca, tmp_path, "mtls-client")
    other = issue_client_cert(tls_ca, tmp_path, "somebody-else")
    with _mtls_client(tls_ca, good.cert, good.key) as client:
        ok = client.post(alias, data={**GRANT, "client_id": "mtls-client"})
        assert ok.status_code == 200, ok.text
        pinned = client.post(alias, data={**GRANT, "client_id": "pinned"})  # fingerprint differs
        assert pinned.status_code == 401
    with _mtls_client(tls_ca, other.cert, other.key) as client:
        assert client.post(alias, data={**GRANT, "client_id": "mtls-client"}).status_code == 401
    with _mtls_client(tls_ca) as client:  # no certificate: client_id alone authenticates nobody
        assert client.post(alias, data={**GRANT, "client_id": "mtls-client"}).status_code == 401
    foreign = trustme.CA().issue_cert(common_name="mtls-client")
    foreign.cert_chain_pems[0].write_to_path(str(tmp_path / "foreign.pem"))
    foreign.private_key_pem.write_to_path(str(tmp_path / "foreign-key.pem"))
    with (
        _mtls_client(tls_ca, tmp_path / "foreign.pem", tmp_path / "foreign-key.pem") as client,
        pytest.raises(httpx.HTTPError),  # the handshake refuses a certificate from another CA
    ):
        client.post(alias, data={**GRANT, "client_id": "mtls-client"})
    log = servers.token_log()
    assert [(e["auth"], e["client_id"], e["status"]) for e in log] == [
        ("tls_client_auth", "mtls-client", 200),
        ("tls_client_auth", "pinned", 401),
        ("tls_client_auth", "mtls-client", 401),
        (None, None, 401),
    ]
    assert (log[0]["path"], log[0]["cert_cn"]) == ("/mtls/token", "mtls-client")


def test_cli_clients_file_and_bad_clients(tmp_path: Path, rsa_pair: KeyPair) -> None:
    spec = {"rs": {"public_key_file": rsa_pair.public_key.name}, "s": "secret"}
    (tmp_path / "clients.json").write_text(json.dumps(spec))
    from mitm_oauth2.devservers.clients import parse_clients

    parsed = parse_clients(spec, tmp_path)
    assert parsed["rs"].public_key == rsa_pair.public_key.read_text()
    assert parsed["s"].secret == "secret"
    with pytest.raises(ValueError, match="go together"):
        parse_clients({"c": {"federated_issuer": "https://k8s.example"}})
    for bad in ('{"c": 1}', '{"c": {"secrett": "x"}}', '{"c": {"federated_key": "x"}}', "[]", "{"):
        done = subprocess.run(
            [sys.executable, "-m", "mitm_oauth2.devservers", "--clients", bad],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=20,
            check=False,
        )
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert "clients:" in done.stderr
