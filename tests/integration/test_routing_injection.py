"""How the token is put on a request, and which requests get which token, through the real
mitmdump: a custom header and format, token types that are not Bearer (refused, never sent as
Bearer), and path_prefix routing of one host to several backends with their own clients."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import toml_backend
from tests.support.procs import curl
from tests.support.proxies import ProxyFactory


def test_custom_header_and_format(devservers: DevServersProcess, mitmdump: ProxyFactory) -> None:
    devservers.configure(backend_header="X-Api-Key")  # the backend wants the bare token there
    proxy = mitmdump(devservers.backend_toml(header="X-Api-Key", header_format="{token}"))
    with proxy.client() as client:
        answer = client.get(
            f"{devservers.backend_url}/things", headers={"X-Api-Key": "caller-made-this-up"}
        )
    assert answer.status_code == 200, answer.text
    (received,) = devservers.backend_requests()
    (entry,) = devservers.token_log()
    (key,) = received["credential"]  # exactly one X-Api-Key: the caller's was replaced
    assert key != "caller-made-this-up"
    assert answer.json()["token_id"] == entry["token_id"]
    assert received["authorization"] == []  # nothing added under Authorization


def test_bearer_in_any_case_is_sent_as_bearer(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(token_type="bearer")
    proxy = mitmdump(devservers.backend_toml())
    with proxy.client() as client:
        assert client.get(f"{devservers.backend_url}/things").status_code == 200
    (received,) = devservers.backend_requests()
    (value,) = received["authorization"]
    assert value.startswith("Bearer ")


@pytest.mark.parametrize("token_type", ["DPoP", "mac", "N_A"])
def test_token_types_other_than_bearer_fail_closed(
    token_type: str, devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(token_type=token_type)
    proxy = mitmdump(devservers.backend_toml())
    with proxy.client() as client:
        answer = client.post(f"{devservers.backend_url}/things", content=b"must not arrive")
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert f"token_type '{token_type}', not Bearer" in answer.json()["detail"]
    assert devservers.token_requests() == 1
    assert devservers.backend_requests() == []  # not downgraded to Bearer, not sent at all


CLIENTS = {"client-a": "secret a", "client-b": "secret b", "client-admin": "secret admin"}


@pytest.fixture
def routed(
    devservers_factory: DevServersFactory, mitmdump: ProxyFactory
) -> tuple[DevServersProcess, str]:
    """One backend host split by path: /a, /a/admin (longer prefix) and /b, own clients each."""
    servers = devservers_factory(clients=CLIENTS)
    routes = [("api-a", "/a", "client-a"), ("api-a-admin", "/a/admin", "client-admin")]
    routes.append(("api-b", "/b", "client-b"))
    config = "".join(
        toml_backend(
            name=name,
            hosts=[servers.backend_host],
            path_prefix=prefix,
            token_url=servers.token_url,
            client_id=client_id,
            client_secret=CLIENTS[client_id],
        )
        for name, prefix, client_id in routes
    )
    return servers, mitmdump(config).url


def _get(proxy_url: str, url: str) -> tuple[int, dict[str, Any]]:
    """GET through the proxy with curl, which sends the path exactly as given (dot segments too).
    Returns the status and the backend's JSON answer."""
    done = curl("--path-as-is", "-x", proxy_url, "-w", "\n%{http_code}", url)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_path_prefix_routes_to_each_backends_own_client(
    routed: tuple[DevServersProcess, str],
) -> None:
    servers, proxy_url = routed
    base = servers.backend_url
    answers = {path: _get(proxy_url, base + path) for path in ("/a/x", "/a/admin/y", "/b/z")}
    assert all(status == 200 for status, _ in answers.values()), answers
    clients_by_token = {e["token_id"]: e["client_id"] for e in servers.token_log()}
    used = {path: clients_by_token[body["token_id"]] for path, (_, body) in answers.items()}
    assert used == {"/a/x": "client-a", "/a/admin/y": "client-admin", "/b/z": "client-b"}
    assert sorted(clients_by_token.values()) == ["client-a", "client-admin", "client-b"]


@pytest.mark.parametrize("path", ["/c", "/ab", "/", "/A/x"])
def test_paths_outside_every_prefix_get_no_token(
    path: str, routed: tuple[DevServersProcess, str]
) -> None:
    servers, proxy_url = routed
    status, body = _get(proxy_url, servers.backend_url + path)
    assert (status, body["error"]) == (401, "no token")
    (received,) = servers.backend_requests()
    assert received["authorization"] == []
    assert servers.token_requests() == 0


@pytest.mark.parametrize(
    ("into_b", "into_c"),
    [("/a/../b/z", "/b/../c"), ("/a/%2e%2e/b/z", "/b/%2e%2e/c")],
    ids=["plain", "percent-encoded"],
)
def test_dot_segments_are_routed_as_the_server_resolves_them(
    into_b: str, into_c: str, routed: tuple[DevServersProcess, str]
) -> None:
    """Plain or percent-encoded, `into_b` resolves to /b/z and `into_c` to /c."""
    servers, proxy_url = routed
    status, body = _get(proxy_url, servers.backend_url + into_b)
    assert status == 200, body
    assert body["path"] == into_b  # forwarded as sent; the backend resolves it to /b/z
    (entry,) = servers.token_log()
    assert entry["client_id"] == "client-b"  # /b's credentials, not /a's
    status, body = _get(proxy_url, servers.backend_url + into_c)
    assert (status, body["error"]) == (401, "no token")  # /c: nobody's token
    assert servers.token_requests() == 1


def test_a_near_miss_is_told_once_per_host_and_port(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    """`hosts = ["localhost"]` means ports 80 and 443: a request to another port of localhost
    passes untouched, and the log says once which backend nearly took it and what to change."""
    port = devservers.backend_url.rsplit(":", 1)[1]
    proxy = mitmdump(devservers.backend_toml(hosts=["localhost"]))
    with proxy.client() as client:
        for _ in range(3):
            answer = client.get(f"http://localhost:{port}/things")
            assert answer.status_code == 401  # passed on, without a token
    assert devservers.token_requests() == 0
    line = proxy.wait_for_output(rf"http://localhost:{port} gets no token.*").group(0)
    assert "backend 'api' lists localhost, which means port 443 (https) and 80 (http)" in line
    assert f"add 'localhost:{port}' to its hosts" in line
    assert proxy.output().count("gets no token") == 1
    assert all(r["authorization"] == [] for r in devservers.backend_requests())
