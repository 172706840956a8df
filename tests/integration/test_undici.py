"""Node.js through the real mitmdump: tests/interop/undici_fetch.mjs, docs/testing.md's example,
fetches from an HTTPS backend with undici's ProxyAgent, trusting the proxy's CA through
NODE_EXTRA_CA_CERTS. Node and tests/interop's npm packages are prerequisites, as for the interop
tests (scripts/test installs the packages): without them this test fails saying so."""

from __future__ import annotations

import json

import pytest

from tests.support.devservers import DevServersProcess
from tests.support.procs import REPO
from tests.support.procs import node
from tests.support.procs import run
from tests.support.procs import subprocess_env
from tests.support.proxies import ProxyFactory

INTEROP = REPO / "tests" / "interop"
SCRIPT = INTEROP / "undici_fetch.mjs"


def test_undici_fetch_through_the_proxy_gets_the_token(
    devservers_tls: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    node_js = node()
    if not (INTEROP / "node_modules" / "undici" / "package.json").is_file():
        pytest.fail(f"undici is not installed: run `npm ci` in {INTEROP}", pytrace=False)
    proxy = mitmdump(devservers_tls.backend_toml())
    urls = [f"{devservers_tls.backend_url}/orders/{n}" for n in range(3)]
    env = subprocess_env(HTTPS_PROXY=proxy.url, NODE_EXTRA_CA_CERTS=str(proxy.ca_cert))
    done = run([node_js, str(SCRIPT), *urls], env=env, cwd=INTEROP, timeout=30)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [answer["status"] for answer in answers] == [200, 200, 200]
    assert all(answer["body"]["ok"] for answer in answers)  # the backend accepted the token
    assert len({answer["body"]["token_id"] for answer in answers}) == 1
    received = devservers_tls.backend_requests()
    assert [seen["path"] for seen in received] == [f"/orders/{n}" for n in range(3)]
    for seen in received:
        (value,) = seen["authorization"]
        assert value.startswith("Bearer ")
    assert devservers_tls.token_requests() == 1
