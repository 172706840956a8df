"""Learning a backend through the real mitmdump (RFC 9728): an HTTPS backend that no
`[[backend]]` names answers 401 naming its protected resource metadata; the proxy reads it and
the authorization server's metadata, asks for no token, and `oauth.suggest` prints a table that
works as it is once pasted into a configuration (the client's id and secret in the environment
variables it names)."""

from __future__ import annotations

import tomllib

import pytest

from tests.support.devservers import DEMO_CLIENT_ID
from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.proxies import COMMAND_PROBE
from tests.support.proxies import ProxyFactory

SCOPES = ["orders:read", "orders:write"]


@pytest.fixture
def https_servers(devservers_factory: DevServersFactory) -> DevServersProcess:
    servers = devservers_factory(tls=True, token_tls=True)
    servers.configure(
        resource_metadata={
            "resource": servers.backend_url,
            "authorization_servers": [servers.issuer],
            "scopes_supported": SCOPES,
        }
    )
    return servers


def unrelated(servers: DevServersProcess) -> str:
    """A configuration whose one backend is another host: the learned one is not configured."""
    return servers.backend_toml("elsewhere", hosts=["elsewhere.test"])


def suggest(proxy) -> str:
    with proxy.client() as client:
        answer = client.get("http://commands.probe.invalid/oauth.suggest")
    assert answer.status_code == 200, answer.text
    return answer.text


def test_a_backend_learned_from_its_401_works_once_its_table_is_pasted(
    https_servers: DevServersProcess,
    mitmdump: ProxyFactory,
    tls_ca: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servers = https_servers
    proxy = mitmdump(unrelated(servers), "-s", str(COMMAND_PROBE))
    with proxy.client() as client:
        answers = [client.get(f"{servers.backend_url}/orders/{n}") for n in range(2)]
    assert [a.status_code for a in answers] == [401, 401]  # the backend's answers, as they were
    assert servers.token_requests() == 0  # nothing asked of the learned server
    host = servers.backend_host
    proxy.wait_for_output(rf"oauth2: {host} wants tokens of {servers.issuer} \(RFC 9728")
    table = suggest(proxy)
    (suggested,) = tomllib.loads(table)["backend"]
    name = host.replace(".", "-").replace(":", "-")
    env = name.upper().replace("-", "_")
    assert suggested == {
        "name": name,
        "hosts": [host],
        "issuer": servers.issuer,
        "resource": servers.backend_url,
        "scope": " ".join(SCOPES),
        "token_ca_bundle": str(tls_ca.ca_cert),  # what mitmproxy trusts upstream, as here
        "client_id_env": f"{env}_CLIENT_ID",
        "client_secret_env": f"{env}_CLIENT_SECRET",
    }
    assert [entry["status"] for entry in servers.metadata_log()] == [200]  # the issuer's, once

    monkeypatch.setenv(f"{env}_CLIENT_ID", DEMO_CLIENT_ID)
    monkeypatch.setenv(f"{env}_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    pasted = mitmdump(table)
    with pasted.client() as client:
        answer = client.get(f"{servers.backend_url}/orders/7")
    assert answer.status_code == 200, answer.text
    (asked,) = servers.token_log()
    assert (asked["client_id"], asked["scope"]) == (DEMO_CLIENT_ID, " ".join(SCOPES))
    assert asked["resource"] == [servers.backend_url]


def test_metadata_for_another_resource_is_refused(
    https_servers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    servers = https_servers
    servers.configure(
        resource_metadata={
            "resource": "https://other.test",
            "authorization_servers": [servers.issuer],
        }
    )
    proxy = mitmdump(unrelated(servers), "-s", str(COMMAND_PROBE))
    with proxy.client() as client:
        assert client.get(f"{servers.backend_url}/orders").status_code == 401
    proxy.wait_for_output(
        r"resource metadata that cannot be used: .* is for resource 'https://other.test'"
    )
    assert suggest(proxy).startswith("# no backend learned yet")
    assert servers.metadata_log() == []  # its authorization server was never asked
