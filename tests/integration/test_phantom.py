"""Phantom tokens through the real mitmdump, with real SDKs that do OAuth themselves and hold
only dummy credentials: authlib's and requests-oauthlib's client-credentials sessions, and
google-auth with a service-account key file of its own whose token_uri is the dev server's.
Each gets a phantom token from the proxy; the authorization server hears only the proxy's own
client (once), never the SDK's credentials; the backend gets only the real token."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session

from tests.support.devservers import DEMO_CLIENT_ID
from tests.support.devservers import DevServersProcess
from tests.support.key_material import private_pem
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory

DUMMY_ID, DUMMY_SECRET = "sdk-dummy-id", "sdk-dummy-secret"


@pytest.fixture
def phantom(devservers: DevServersProcess, mitmdump: ProxyFactory) -> Proxy:
    return mitmdump(devservers.backend_toml("crm", phantom=True))


def assert_sandboxed(devservers: DevServersProcess, proxy: Proxy, phantoms: set[str]) -> None:
    """One real token request, by the proxy's own client; the backend saw only that token."""
    log = devservers.token_log()
    assert [entry["client_id"] for entry in log] == [DEMO_CLIENT_ID]
    assert DUMMY_SECRET not in json.dumps(log)
    seen = [request["authorization"] for request in devservers.backend_requests()]
    assert seen
    assert all(request["ok"] for request in devservers.backend_requests())
    assert not any(phantom in value for phantom in phantoms for values in seen for value in values)
    assert DUMMY_SECRET not in proxy.output()


def test_authlib_client_credentials_session(devservers: DevServersProcess, phantom: Proxy) -> None:
    with OAuth2Client(
        DUMMY_ID, DUMMY_SECRET, proxy=phantom.url, verify=phantom.ssl_context(), trust_env=False
    ) as client:
        token = client.fetch_token(devservers.token_url, grant_type="client_credentials")
        assert token["access_token"].startswith("phantom.")
        assert 0 < token["expires_in"] <= 3600
        for path in ("/accounts", "/accounts/1"):
            assert client.get(f"{devservers.backend_url}{path}").status_code == 200
    assert_sandboxed(devservers, phantom, {token["access_token"]})


def test_requests_oauthlib_backend_application_flow(
    devservers: DevServersProcess, phantom: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the dev server is http on loopback
    session = OAuth2Session(client=BackendApplicationClient(client_id=DUMMY_ID))
    session.trust_env = False
    session.proxies = {"http": phantom.url, "https": phantom.url}
    token = session.fetch_token(
        devservers.token_url, client_id=DUMMY_ID, client_secret=DUMMY_SECRET
    )
    assert session.get(f"{devservers.backend_url}/accounts").status_code == 200
    assert_sandboxed(devservers, phantom, {token["access_token"]})


def test_google_auth_with_a_service_account_key_file(
    devservers: DevServersProcess, phantom: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = private_pem(rsa.generate_private_key(65537, 2048)).decode("ascii")
    info = {
        "type": "service_account",
        "project_id": "sandbox",
        "private_key_id": "dummy-key-1",
        "private_key": key,  # a key no server knows: the proxy never sends the assertion on
        "client_email": "sdk@sandbox.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": devservers.token_url,
    }
    (tmp_path / "sa.json").write_text(json.dumps(info), encoding="utf-8")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in phantom.client_env().items():
        monkeypatch.setenv(name, value)  # the SDK's own token session goes through it too
    credentials = service_account.Credentials.from_service_account_file(
        str(tmp_path / "sa.json"), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    session = AuthorizedSession(credentials)
    assert session.get(f"{devservers.backend_url}/accounts").status_code == 200
    assert credentials.token.startswith("phantom.")
    assert_sandboxed(devservers, phantom, {credentials.token})


def test_a_token_endpoint_found_by_discovery_is_answered_too(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(
        devservers.backend_toml("crm", token_url=None, issuer=devservers.issuer, phantom=True)
    )
    with OAuth2Client(DUMMY_ID, DUMMY_SECRET, proxy=proxy.url, trust_env=False) as client:
        discovery = f"{devservers.issuer}/.well-known/openid-configuration"
        metadata = client.request("GET", discovery, withhold_token=True).json()  # as SDKs do
        token = client.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        assert client.get(f"{devservers.backend_url}/accounts").status_code == 200
    assert token["access_token"].startswith("phantom.")
    assert_sandboxed(devservers, proxy, {token["access_token"]})


def test_what_the_client_cannot_do_with_a_phantom_token(
    devservers: DevServersProcess, phantom: Proxy
) -> None:
    with httpx.Client(proxy=phantom.url, trust_env=False) as client:
        answer = client.post(
            devservers.token_url, data={"grant_type": "client_credentials"}, auth=("x", "y")
        )
        issued = answer.json()["access_token"]
        made_up = client.get(
            f"{devservers.backend_url}/a", headers={"Authorization": "Bearer phantom.made-up"}
        )
        other_grant = client.post(devservers.token_url, data={"grant_type": "password"})
    # Straight to the backend, past the proxy: the phantom token is worth nothing.
    with devservers.backend_client() as backend:
        direct = backend.get("/a", headers={"Authorization": f"Bearer {issued}"})
    assert made_up.status_code == 401
    assert made_up.headers["Content-Type"] == "application/problem+json"
    assert other_grant.status_code == 400
    assert other_grant.json()["error"] == "unsupported_grant_type"
    assert direct.status_code == 401
    assert [request["ok"] for request in devservers.backend_requests()] == [False]  # direct
