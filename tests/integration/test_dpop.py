"""DPoP (RFC 9449) through the real mitmdump, against the devservers' checks: the token request
carries a proof (and the server's nonce when it asks for one), the token is bound to the
proxy's key, and every request to the backend carries `Authorization: DPoP` and a fresh proof
for its method, URL and token."""

from __future__ import annotations

import pytest

from tests.integration.test_lifecycle import crowd
from tests.support.devservers import DevServersProcess
from tests.support.proxies import ProxyFactory
from tests.support.redis_server import RedisServer


def test_dpop_bound_token_and_a_proof_per_request(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    devservers.configure(dpop_nonce="server-nonce-1")
    proxy = mitmdump(devservers.backend_toml(dpop=True))
    with proxy.client() as client:
        answers = [client.get(f"{devservers.backend_url}/things/{n}?q={n}") for n in range(3)]
    assert [answer.status_code for answer in answers] == [200] * 3, answers[0].text
    log = devservers.token_log()
    # The first proof had no nonce: the server asked for one, the proxy asked again with it.
    assert [(entry["status"], entry["dpop"]["nonce"]) for entry in log] == [
        (400, None),
        (200, "server-nonce-1"),
    ]
    seen = devservers.backend_requests()
    assert all(request["authorization"][0].startswith("DPoP ") for request in seen)
    assert [request["dpop_error"] for request in seen] == [None] * 3
    assert proxy.output().count("BEGIN") == 0  # no key material in the log


def test_a_rejected_dpop_token_is_replayed_with_a_new_token_and_proof(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(devservers.backend_toml(dpop=True))
    with proxy.client() as client:
        assert client.get(f"{devservers.backend_url}/things").status_code == 200
        devservers.revoke()  # the backend refuses the token: a new one, and a proof for it
        answer = client.get(f"{devservers.backend_url}/things")
    assert answer.status_code == 200, answer.text
    first, refused, replayed = devservers.backend_requests()
    assert (first["ok"], refused["ok"], replayed["ok"]) == (True, False, True)
    assert replayed["authorization"] != refused["authorization"]
    assert replayed["dpop_error"] is None
    assert [entry["status"] for entry in devservers.token_log()] == [200, 200]


def test_a_backend_that_wants_a_nonce_gets_it_once_asked(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    """RFC 9449 §9: a 401 `use_dpop_nonce` with a DPoP-Nonce is answered by the same request
    with the nonce in its proof, and later requests carry it from the start."""
    devservers.configure(backend_dpop_nonce="backend-nonce-7")
    proxy = mitmdump(devservers.backend_toml(dpop=True))
    with proxy.client() as client:
        answers = [client.get(f"{devservers.backend_url}/things/{n}") for n in range(2)]
    assert [answer.status_code for answer in answers] == [200, 200], answers[0].text
    first, again, later = devservers.backend_requests()
    assert (first["dpop_error"], again["dpop_error"], later["dpop_error"]) == (
        "use_dpop_nonce",
        None,
        None,
    )
    assert first["authorization"] == again["authorization"]  # the same token
    assert len(devservers.token_log()) == 1


@pytest.mark.anyio
async def test_proxies_sharing_a_store_share_one_token_and_the_key_it_is_bound_to(
    devservers: DevServersProcess,
    mitmdump: ProxyFactory,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three proxies, each with a key of its own making, at a cold start on one Redis: one
    token request, and every proxy's proofs are signed with the key that token is bound to,
    which the store holds sealed with the store key."""
    monkeypatch.setenv("FLEET_STORE_KEY", "fleet-store-key-aa01b2c3d4")
    devservers.configure(delay=0.3)
    options = ("--set", f"oauth2_store={redis_server.url}")
    options += ("--set", "oauth2_store_key_env=FLEET_STORE_KEY")
    proxies = [mitmdump(devservers.backend_toml(dpop=True), *options) for _ in range(3)]
    statuses = await crowd(proxies, devservers.backend_url, 10)
    assert statuses == [200] * 30
    assert [entry["status"] for entry in devservers.token_log()] == [200]
    seen = devservers.backend_requests()
    assert {request["dpop_error"] for request in seen} == {None}
    assert len({request["authorization"][0] for request in seen}) == 1
    with redis_server.client() as client:
        stored = b"".join(client.get(key) or b"" for key in client.keys("mitm-oauth2:token/*"))
    assert stored
    assert b"PRIVATE KEY" not in stored  # sealed, the key with the token
    assert b"DPoP" not in stored
    for proxy in proxies:
        assert "PRIVATE KEY" not in proxy.output()
