"""The JWT-bearer grant (RFC 7523 §2.1) through the real mitmdump against an authorization
server built on authlib's JWTBearerGrant: a Google service-account key file, and the generic
settings (issuer, subject, audience, key) of Salesforce's and Okta's service-app flows. The
backend serves only tokens that server issued."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.devservers import toml_backend
from tests.support.key_material import KeyPair
from tests.support.key_material import make_key_pair
from tests.support.procs import Child
from tests.support.proxies import ProxyFactory

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "reader@interop.iam.gserviceaccount.com"
CONSUMER_KEY = "3MVG9-interop-consumer"
USER = "integration@example.com"


@dataclass
class AuthlibServer:
    child: Child
    token_url: str
    base_url: str

    @property
    def host(self) -> str:
        return self.base_url.removeprefix("http://")

    def log(self) -> list[dict[str, Any]]:
        with httpx.Client(trust_env=False, timeout=10) as http:
            answer = http.get(f"{self.base_url}/_interop/log")
        answer.raise_for_status()
        entries: list[dict[str, Any]] = answer.json()
        return entries


@dataclass(frozen=True)
class Keys:
    google: KeyPair
    generic: KeyPair
    stranger: KeyPair  # of the generic key's type, unknown to the server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("jwt-bearer-keys")
    stranger = make_key_pair(tmp_path_factory.mktemp("stranger-key"), "ec")
    return Keys(make_key_pair(directory, "rsa"), make_key_pair(directory, "ec"), stranger)


@pytest.fixture(scope="module")
def authlib_server(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[AuthlibServer]:
    clients = [
        {
            "issuer": SERVICE_ACCOUNT,
            "public_key": keys.google.public_key.read_text(),
            "scope": "https://www.googleapis.com/auth/cloud-platform",
        },
        {
            "issuer": CONSUMER_KEY,
            "public_key": keys.generic.public_key.read_text(),
            "subjects": [USER],
            "scope": "api refresh_token",
        },
    ]
    spec = tmp_path_factory.mktemp("authlib") / "clients.json"
    spec.write_text(json.dumps(clients), encoding="utf-8")
    cmd = [sys.executable, "-m", "tests.interop.authlib_server", str(spec)]
    child = Child("authlib-server", cmd, ready=r"^(\{.*\})$", cwd=ROOT, separate_stderr=True)
    assert child.ready_match is not None
    ready = json.loads(child.ready_match.group(1))
    yield AuthlibServer(child, ready["token_url"], ready["base_url"])
    child.stop()


def service_account_file(directory: Path, key: KeyPair, token_uri: str) -> Path:
    """As `gcloud iam service-accounts keys create` writes it."""
    document = {
        "type": "service_account",
        "project_id": "interop",
        "private_key_id": "4f1c0d2e",
        "private_key": key.private_key.read_text(),
        "client_email": SERVICE_ACCOUNT,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    path = directory / "service-account.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_a_google_service_account_key_file(
    authlib_server: AuthlibServer, mitmdump: ProxyFactory, keys: Keys, tmp_path: Path
) -> None:
    """No token_url: the file's token_uri is used, as Google's libraries do."""
    sa_file = service_account_file(tmp_path, keys.google, authlib_server.token_url)
    proxy = mitmdump(
        toml_backend(
            name="gcp",
            hosts=[authlib_server.host],
            grant="jwt_bearer",
            service_account_file=str(sa_file),
            scope="https://www.googleapis.com/auth/cloud-platform",
        )
    )
    before = len(authlib_server.log())
    with proxy.client() as client:
        answer = client.get(f"{authlib_server.base_url}/api/projects")
    assert answer.status_code == 200, answer.text
    assert answer.json()["issuer"] == SERVICE_ACCOUNT
    (entry,) = authlib_server.log()[before:]
    assert entry["status"] == 200
    assert entry["form_keys"] == ["assertion", "grant_type"]  # the scope is a claim
    assert entry["header"]["kid"] == "4f1c0d2e"
    claims = entry["claims"]
    assert claims["aud"] == authlib_server.token_url
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert claims["exp"] - claims["iat"] == 3600
    assert keys.google.private_key.read_text().splitlines()[1] not in proxy.output()


def crm(server: AuthlibServer, key: KeyPair, **fields: str) -> str:
    """A backend whose assertion names the connected app's key and the user, as Salesforce's."""
    return toml_backend(
        name="crm",
        hosts=[server.host],
        token_url=server.token_url,
        grant="jwt_bearer",
        private_key_file=str(key.private_key),
        assertion_issuer=CONSUMER_KEY,
        assertion_subject=USER,
        **fields,
    )


def test_a_generic_assertion_for_a_user(
    authlib_server: AuthlibServer, mitmdump: ProxyFactory, keys: Keys
) -> None:
    proxy = mitmdump(crm(authlib_server, keys.generic, key_id="crm-1", scope="api"))
    before = len(authlib_server.log())
    with proxy.client() as client:
        answer = client.get(f"{authlib_server.base_url}/api/accounts")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "path": "accounts",
        "issuer": CONSUMER_KEY,
        "subject": USER,
        "scope": "api",
    }
    (entry,) = authlib_server.log()[before:]
    assert entry["form_keys"] == ["assertion", "grant_type", "scope"]
    assert (entry["claims"]["iss"], entry["claims"]["sub"]) == (CONSUMER_KEY, USER)


def test_an_assertion_the_server_refuses_is_a_502_saying_what_to_check(
    authlib_server: AuthlibServer, mitmdump: ProxyFactory, keys: Keys
) -> None:
    """Signed with a key the server does not have for this issuer."""
    proxy = mitmdump(crm(authlib_server, keys.stranger))
    with proxy.client() as client:
        answer = client.get(f"{authlib_server.base_url}/api/accounts")
    assert answer.status_code == 502
    problem = answer.json()
    assert problem["oauth_error"] == "invalid_grant"
    assert "assertion_issuer" in problem["detail"]
    assert authlib_server.log()[-1]["status"] == 400
