"""Fast checks of the devservers themselves, over real loopback HTTP without a proxy."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from mitm_oauth2.devservers import DEFAULT_USERS
from tests.support.devservers import DEMO_CLIENT_ID
from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.devservers import basic_auth
from tests.support.devservers import token_id
from tests.support.procs import subprocess_env

pytestmark = pytest.mark.integration

GRANT = {"grant_type": "client_credentials"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


def test_basic_auth_encodes_secret_per_rfc6749(
    devservers: DevServersProcess, http: httpx.Client
) -> None:
    assert all(c in DEMO_CLIENT_SECRET for c in ": %+&")
    response = http.post(
        devservers.token_url,
        data={**GRANT, "scope": "read write"},
        headers={"Authorization": basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "read write"
    assert len(body["access_token"]) >= 32

    # The secret without form-urlencoding is wrong: '+' decodes to ' '.
    raw = base64.b64encode(f"{DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}".encode()).decode()
    response = http.post(
        devservers.token_url, data=GRANT, headers={"Authorization": f"Basic {raw}"}
    )
    assert response.status_code == 401

    log = devservers.stats()["token_request_log"]
    assert [(e["auth"], e["client_id"], e["status"]) for e in log] == [
        ("basic", DEMO_CLIENT_ID, 200),
        ("basic", DEMO_CLIENT_ID, 401),
    ]
    assert log[0]["scope"] == "read write"
    assert log[0]["token_id"] == token_id(body["access_token"])


def test_post_auth(devservers: DevServersProcess, http: httpx.Client) -> None:
    form = {**GRANT, "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET}
    response = http.post(devservers.token_url, data=form)
    assert response.status_code == 200, response.text
    assert "scope" not in response.json()
    (entry,) = devservers.stats()["token_request_log"]
    assert entry["auth"] == "post"
    assert entry["client_id"] == DEMO_CLIENT_ID
    assert entry["scope"] is None


def test_custom_clients(devservers_factory: DevServersFactory) -> None:
    servers = devservers_factory(clients={"other": "pw"})
    assert servers.fetch_token("other", "pw")
    with pytest.raises(httpx.HTTPStatusError):
        servers.fetch_token()


DEMO_AUTH = {"Authorization": basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)}


@pytest.mark.parametrize(
    ("auth", "form", "status", "error"),
    [
        (("demo-client", "wrong"), {}, 401, "invalid_client"),
        (("nobody", DEMO_CLIENT_SECRET), {}, 401, "invalid_client"),
        (None, {}, 401, "invalid_client"),
        (None, {"client_id": DEMO_CLIENT_ID, "client_secret": "wrong"}, 401, "invalid_client"),
        ((DEMO_CLIENT_ID, DEMO_CLIENT_SECRET), {"client_secret": "x"}, 400, "invalid_request"),
        ((DEMO_CLIENT_ID, DEMO_CLIENT_SECRET), {"grant_type": "authorization_code"}, 400, None),
    ],
)
def test_token_errors(
    devservers: DevServersProcess,
    http: httpx.Client,
    auth: tuple[str, str] | None,
    form: dict[str, str],
    status: int,
    error: str | None,
) -> None:
    headers = {"Authorization": basic_auth(*auth)} if auth else {}
    response = http.post(devservers.token_url, data={**GRANT, **form}, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == (error or "unsupported_grant_type")
    if status == 401:
        assert response.headers["www-authenticate"] == 'Basic realm="devserver"'


def test_refresh_tokens_rotate_and_a_spent_one_revokes_the_sign_in(
    devservers: DevServersProcess, http: httpx.Client
) -> None:
    def refresh(token: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": token}
        return http.post(devservers.token_url, data=form, headers=DEMO_AUTH)

    first = devservers.sign_in()
    answer = refresh(first)
    assert answer.status_code == 200
    second = answer.json()["refresh_token"]
    assert second != first
    assert refresh(first).json()["error"] == "invalid_grant"  # spent: the sign-in is revoked
    assert refresh(second).json()["error"] == "invalid_grant"
    assert devservers.stats()["sign_ins_revoked"] == 1


def test_the_password_grant_checks_the_user(
    devservers: DevServersProcess, http: httpx.Client
) -> None:
    form = {"grant_type": "password", "username": "demo-user"}
    wrong = http.post(devservers.token_url, data=form | {"password": "x"}, headers=DEMO_AUTH)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    right = form | {"password": DEFAULT_USERS["demo-user"]}
    answer = http.post(devservers.token_url, data=right, headers=DEMO_AUTH)
    assert answer.status_code == 200
    assert answer.json()["refresh_token"].startswith("rt-")


def test_backend_checks_bearer_token(devservers: DevServersProcess) -> None:
    token = devservers.fetch_token()
    with devservers.backend_client(timeout=10) as backend:
        ok = backend.post("/things?x=1", content=b"payload", headers=_bearer(token))
        assert ok.status_code == 200, ok.text
        assert ok.json() == {
            "ok": True,
            "method": "POST",
            "path": "/things?x=1",
            "body": "payload",
            "token_id": token_id(token),
        }
        chunked = backend.put("/c", content=iter([b"ab", b"cd"]), headers=_bearer(token))
        assert chunked.json()["body"] == "abcd"

        missing = backend.get("/")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = backend.get("/", headers=_bearer("not-issued"))
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        doubled = backend.get("/", headers=[("Authorization", f"Bearer {token}")] * 2)
        assert doubled.status_code == 401

        devservers.revoke()
        assert backend.get("/", headers=_bearer(token)).status_code == 401

    requests = devservers.backend_requests()
    assert [r["method"] for r in requests] == ["POST", "PUT", "GET", "GET", "GET", "GET"]
    assert requests[0]["authorization"] == [f"Bearer {token}"]
    assert requests[0]["body"] == "payload"
    assert requests[0]["host"] == devservers.backend_host
    assert requests[2]["authorization"] == []
    assert len(requests[4]["authorization"]) == 2


def test_status_knob(devservers: DevServersProcess, http: httpx.Client) -> None:
    devservers.configure(status=503, body='{"error": "temporarily_unavailable"}', retry_after=7)
    response = http.post(devservers.token_url, data=GRANT)  # no client auth: the knob wins
    assert response.status_code == 503
    assert response.json() == {"error": "temporarily_unavailable"}
    assert response.headers["retry-after"] == "7"

    devservers.configure(status=200, body="<html>", content_type="text/html", retry_after=None)
    response = http.post(devservers.token_url, data=GRANT)
    assert (response.status_code, response.text) == (200, "<html>")
    assert response.headers["content-type"] == "text/html"

    devservers.reset()
    assert devservers.fetch_token()
    assert devservers.token_requests() == 1  # reset cleared the counters


def test_delay_knob(devservers: DevServersProcess) -> None:
    devservers.configure(delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            devservers.token_url,
            data=GRANT,
            headers={"Authorization": basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)},
            timeout=httpx.Timeout(10, read=0.1),
            trust_env=False,
        )
    assert devservers.fetch_token()  # still answers, just late


def test_expires_in_and_token_type_knobs(devservers: DevServersProcess) -> None:
    devservers.configure(expires_in=None, token_type="bearer")
    response = devservers.admin.post(
        devservers.token_url,
        data=GRANT,
        headers={"Authorization": basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)},
    )
    assert "expires_in" not in response.json()
    assert response.json()["token_type"] == "bearer"

    devservers.configure(expires_in=0)  # issued already expired
    expired = devservers.fetch_token()
    devservers.configure(expires_in=120)
    fresh = devservers.fetch_token()
    with devservers.backend_client(timeout=10) as backend:
        assert backend.get("/", headers=_bearer(expired)).status_code == 401
        assert backend.get("/", headers=_bearer(fresh)).status_code == 200


def test_down_knob(devservers: DevServersProcess, http: httpx.Client) -> None:
    devservers.configure(down=True)
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(devservers.token_url, data=GRANT)
    assert devservers.stats()["token_request_log"][0]["status"] is None
    with pytest.raises(httpx.HTTPStatusError):
        devservers.configure(no_such_knob=1)
    with pytest.raises(httpx.HTTPStatusError):
        devservers.configure(down="yes")


def test_tls_backend(devservers_tls: DevServersProcess, tls_ca: TlsFiles) -> None:
    assert devservers_tls.backend_url.startswith("https://127.0.0.1:")
    token = devservers_tls.fetch_token()
    with devservers_tls.backend_client(timeout=10) as backend:
        assert backend.get("/", headers=_bearer(token)).status_code == 200
    with pytest.raises(httpx.ConnectError):  # not trusted without the test CA
        httpx.get(devservers_tls.backend_url, trust_env=False, timeout=10)


def test_cli_rejects_half_tls_config(tls_ca: TlsFiles) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mitm_oauth2.devservers", "--tls-cert", str(tls_ca.server_cert)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=20,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--tls-key" in done.stderr


def test_sigterm_exits_zero(devservers: DevServersProcess) -> None:
    assert devservers.stop() == 0


def test_in_process_api() -> None:
    from mitm_oauth2.devservers import DevServers

    with DevServers(clients={"c": "s"}) as servers, httpx.Client(trust_env=False) as http:
        response = http.post(
            servers.token_url, data=GRANT, headers={"Authorization": basic_auth("c", "s")}
        )
        token = response.json()["access_token"]
        response = http.get(servers.backend_url + "/x", headers=_bearer(token))
        assert response.json()["ok"] is True
        assert servers.state.stats()["token_requests"] == 1


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_prefix_and_echo_auth_knobs(devservers: DevServersProcess) -> None:
    devservers.configure(token_prefix="FINDME-")
    token = devservers.fetch_token()
    assert token.startswith("FINDME-")
    with devservers.backend_client(timeout=10) as backend:
        assert backend.get("/", headers=_bearer(token)).status_code == 200

    devservers.configure(status=400, echo_auth=True)
    basic = basic_auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    response = devservers.admin.post(
        devservers.token_url, data=GRANT, headers={"Authorization": basic}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"
    assert basic in response.json()["error_description"]
