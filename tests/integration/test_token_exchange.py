"""Token exchange through the real mitmdump and the dev authorization server: each caller's own
token is exchanged once for one of the backend's, which the backend gets instead (never the
caller's); two proxies on one cache exchange a caller's token once; a request without a token,
or with one the server refuses, is answered 401/403 and not forwarded."""

from __future__ import annotations

from pathlib import Path

from tests.support.devservers import DevServersProcess
from tests.support.devservers import token_id
from tests.support.proxies import ProxyFactory

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def exchanges(devservers: DevServersProcess) -> list[dict[str, object]]:
    return [e for e in devservers.token_log() if e["grant_type"] == EXCHANGE]


def seen_tokens(devservers: DevServersProcess) -> list[str]:
    return [r["authorization"][0] for r in devservers.backend_requests()]


def test_each_caller_is_exchanged_once_and_the_backend_never_sees_its_token(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    callers = [devservers.fetch_token() for _ in range(3)]
    proxy = mitmdump(devservers.backend_toml("orders", grant="token_exchange", audience="orders"))
    with proxy.client() as client:
        for _ in range(4):
            for caller in callers:
                headers = {"Authorization": f"Bearer {caller}"}
                response = client.get(f"{devservers.backend_url}/orders", headers=headers)
                assert response.status_code == 200
    done = exchanges(devservers)
    assert sorted(str(e["subject_token_id"]) for e in done) == sorted(map(token_id, callers))
    assert all(e["audience"] == "orders" for e in done)
    seen = seen_tokens(devservers)
    assert len(seen) == 12
    assert len(set(seen)) == 3  # one exchanged token per caller
    assert not any(caller in value for caller in callers for value in seen)
    assert not any(caller in proxy.output() for caller in callers)


def test_two_proxies_on_one_cache_exchange_a_caller_once(
    devservers: DevServersProcess, mitmdump: ProxyFactory, tmp_path: Path
) -> None:
    caller = devservers.fetch_token()
    config = devservers.backend_toml("orders", grant="token_exchange")
    shared = tmp_path / "shared-cache"
    proxies = [mitmdump(config, cache_dir=shared) for _ in range(2)]
    for proxy in proxies:
        with proxy.client() as client:
            headers = {"Authorization": f"Bearer {caller}"}
            assert client.get(f"{devservers.backend_url}/a", headers=headers).status_code == 200
    assert len(exchanges(devservers)) == 1
    assert len(set(seen_tokens(devservers))) == 1


def test_no_token_or_a_refused_one_is_answered_and_not_forwarded(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(devservers.backend_toml("orders", grant="token_exchange"))
    url = f"{devservers.backend_url}/orders"
    with proxy.client() as client:
        missing = client.get(url)
        unknown = client.get(url, headers={"Authorization": "Bearer not-issued-by-the-server"})
        devservers.configure(exchange_error="invalid_target")
        target = client.get(url, headers={"Authorization": f"Bearer {devservers.fetch_token()}"})
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert unknown.status_code == 401
    assert unknown.json()["oauth_error"] == "invalid_grant"
    assert 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    assert target.status_code == 403
    assert target.json()["oauth_error"] == "invalid_target"
    assert devservers.backend_requests() == []
    assert "not-issued-by-the-server" not in proxy.output()
    assert proxy.output().count("a caller's token was refused") == 2  # once per cause
