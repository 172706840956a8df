"""What the proxy asks the token server for arrives as configured: a scope list, audience,
a repeated resource (RFC 8707), extra form parameters and extra headers. All of them are part of
the cached token's identity: changing one in the live config fetches a new token, while
reordering the scope list (same request, semantically) keeps the cached one."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.devservers import DEMO_CLIENT_ID
from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersProcess
from tests.support.devservers import toml_backend
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory

RELOAD_TIMEOUT = 15  # the watcher polls once a second
PARAMS: dict[str, Any] = {
    "scope": ["orders.write", "orders.read"],
    "audience": "https://orders.example/api",
    "resource": ["https://orders.example/", "https://billing.example/"],
    "extra_params": {"tenant": "acme corp", "prompt": "none&more"},
    "token_headers": {"X-Tenant": "acme", "X-Request-Source": "mitm-oauth2"},
}


def backend(servers: DevServersProcess, **fields: Any) -> str:
    base: dict[str, Any] = {
        "name": "orders",
        "hosts": [servers.backend_host],
        "token_url": servers.token_url,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
    }
    return toml_backend(**{**base, **fields})


def test_all_token_request_parameters_arrive(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(backend(devservers, **PARAMS))
    with proxy.client() as client:
        answer = client.get(f"{devservers.backend_url}/orders")
    assert answer.status_code == 200, answer.text
    (entry,) = devservers.token_log()
    assert entry["status"] == 200
    assert entry["scope"] == "orders.write orders.read"
    assert entry["audience"] == "https://orders.example/api"
    assert entry["resource"] == ["https://orders.example/", "https://billing.example/"]
    assert entry["params"]["tenant"] == ["acme corp"]
    assert entry["params"]["prompt"] == ["none&more"]
    assert entry["headers"]["x-tenant"] == ["acme"]
    assert entry["headers"]["x-request-source"] == ["mitm-oauth2"]
    assert entry["headers"]["accept"] == ["application/json"]
    assert entry["auth"] == "basic"  # extra headers do not displace the client authentication


def replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def wait_for_reloads(proxy: Proxy, count: int) -> None:
    pattern = re.compile(
        rf"oauth2: reloaded 1 backend\(s\) from {re.escape(str(proxy.config_path))}"
    )
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while len(pattern.findall(proxy.output())) < count:
        if time.monotonic() > deadline or proxy.returncode is not None:
            pytest.fail(f"expected {count} reload(s):\n{proxy.output()}")
        time.sleep(0.05)


CHANGES = {
    "scope": ["orders.write", "orders.admin"],
    "audience": "https://other.example/api",
    "resource": ["https://orders.example/"],
    "extra_params": {"tenant": "globex", "prompt": "none&more"},
    "token_headers": {"X-Tenant": "globex", "X-Request-Source": "mitm-oauth2"},
}


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_a_changed_parameter_in_the_live_config_fetches_a_new_token(
    key: str, devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    proxy = mitmdump(backend(devservers, **PARAMS))
    url = f"{devservers.backend_url}/orders"
    with proxy.client() as client:
        first = client.get(url)
        assert first.status_code == 200, first.text
        # Same scopes in another order: the same request, the cached token serves.
        reordered = {**PARAMS, "scope": list(reversed(PARAMS["scope"]))}
        replace(proxy.config_path, backend(devservers, **reordered))
        wait_for_reloads(proxy, 1)
        second = client.get(url)
        replace(proxy.config_path, backend(devservers, **{**reordered, key: CHANGES[key]}))
        wait_for_reloads(proxy, 2)
        third = client.get(url)
    assert (second.status_code, third.status_code) == (200, 200), third.text
    assert second.json()["token_id"] == first.json()["token_id"]
    assert third.json()["token_id"] != first.json()["token_id"]
    log = devservers.token_log()
    assert len(log) == 2
    changed = {
        "scope": log[1]["scope"],
        "audience": log[1]["audience"],
        "resource": log[1]["resource"],
        "extra_params": {k: log[1]["params"][k][0] for k in ("tenant", "prompt")},
        "token_headers": {
            name: log[1]["headers"][name.lower()][0] for name in ("X-Tenant", "X-Request-Source")
        },
    }[key]
    expected = " ".join(CHANGES["scope"]) if key == "scope" else CHANGES[key]
    assert changed == expected
