"""The configuration file changes while the real mitmdump runs: a good edit is applied (new
credentials, new token), a broken one keeps the last good configuration serving.

Every wait polls the proxy's output for the line it expects, with a timeout.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.proxies import Proxy
from tests.support.proxies import ProxyFactory

RELOAD_TIMEOUT = 15  # the watcher polls once a second; generous for a loaded CI machine


def replace(path: Path, text: str) -> None:
    """Write the new file beside the old one and rename it over: readers never see half a file."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def wait_for_lines(proxy: Proxy, pattern: str, count: int) -> list[str]:
    """Wait until ``count`` lines of the proxy's output match ``pattern``; returns them all."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        lines = [line for line in proxy.output().splitlines() if regex.search(line)]
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline or proxy.returncode is not None:
            pytest.fail(f"expected {count} line(s) matching {pattern!r}:\n{proxy.output()}")
        time.sleep(0.05)


def reloaded(proxy: Proxy) -> str:
    return rf"oauth2: reloaded 1 backend\(s\) from {re.escape(str(proxy.config_path))}$"


def test_new_credentials_in_the_file_fetch_a_new_token(
    devservers_factory: DevServersFactory, mitmdump: ProxyFactory
) -> None:
    secret_b = "the b secret: % + &"
    servers = devservers_factory(clients={"client-a": "secret-a", "client-b": secret_b})
    proxy = mitmdump(servers.backend_toml("orders", client_id="client-a", client_secret="secret-a"))
    with proxy.client() as client:
        first = client.get(f"{servers.backend_url}/orders/1")
        assert first.status_code == 200, first.text
        edited = servers.backend_toml("orders", client_id="client-b", client_secret=secret_b)
        replace(proxy.config_path, edited)
        wait_for_lines(proxy, reloaded(proxy), 1)
        second = client.get(f"{servers.backend_url}/orders/2")
        assert second.status_code == 200, second.text
    log = servers.stats()["token_request_log"]
    assert [(entry["client_id"], entry["status"]) for entry in log] == [
        ("client-a", 200),
        ("client-b", 200),
    ]
    assert second.json()["token_id"] != first.json()["token_id"]
    assert "secret-a" not in proxy.output()
    assert secret_b not in proxy.output()


def test_broken_file_keeps_the_last_good_config_until_fixed(
    devservers: DevServersProcess, mitmdump: ProxyFactory
) -> None:
    good = devservers.backend_toml("orders")
    # debug output shows each re-read of the broken file, so the test can wait for one
    proxy = mitmdump(good, "--set", "termlog_verbosity=debug")
    path = re.escape(str(proxy.config_path))
    warning = rf"oauth2: keeping the last good configuration: {path}: "
    url = f"{devservers.backend_url}/orders"
    with proxy.client() as client:
        first = client.get(url)
        assert first.status_code == 200, first.text

        replace(proxy.config_path, good + "[[backend\n")
        (line,) = wait_for_lines(proxy, warning, 1)
        assert "invalid TOML" in line
        os.utime(proxy.config_path)  # touched, same content: read again, not reported again
        wait_for_lines(proxy, rf"oauth2: configuration still broken: {path}: ", 1)
        during = [client.get(url) for _ in range(3)]
        assert [answer.status_code for answer in during] == [200, 200, 200]
        assert {answer.json()["token_id"] for answer in during} == {first.json()["token_id"]}

        replace(proxy.config_path, good.replace("client_id", "clientid"))
        lines = wait_for_lines(proxy, warning, 2)
        assert "backend 'orders': key 'clientid': unknown key" in lines[1]

        replace(proxy.config_path, good)
        wait_for_lines(proxy, reloaded(proxy), 1)
        after = client.get(url)
    assert after.status_code == 200, after.text
    assert after.json()["token_id"] == first.json()["token_id"]  # same grant: token reused
    assert devservers.token_requests() == 1
    assert len(wait_for_lines(proxy, warning, 2)) == 2
    assert DEMO_CLIENT_SECRET not in proxy.output()


def test_rotated_secret_file_is_used_at_once(
    devservers: DevServersProcess, mitmdump: ProxyFactory, tmp_path: Path
) -> None:
    """The secret file changes, the TOML does not: the next token request uses the new secret
    (here a wrong one, so the token server refuses it and the caller gets 502, proof that the
    cached token was not reused), and rotating back reuses the first token."""
    secret_file = tmp_path / "orders.secret"  # beside the config file mitmdump gets
    secret_file.write_text(DEMO_CLIENT_SECRET + "\n")
    proxy = mitmdump(
        devservers.backend_toml("orders", client_secret=None, client_secret_file="orders.secret")
    )
    url = f"{devservers.backend_url}/orders"
    with proxy.client() as client:
        first = client.get(url)
        assert first.status_code == 200, first.text

        secret_file.write_text("a wrong secret\n")  # in place
        wait_for_lines(proxy, reloaded(proxy), 1)
        refused = client.get(url)
        assert refused.status_code == 502, refused.text
        assert "invalid_client" in refused.text

        secret_file.write_text(DEMO_CLIENT_SECRET + "\n")
        wait_for_lines(proxy, reloaded(proxy), 2)
        again = client.get(url)
    assert again.status_code == 200, again.text
    assert again.json()["token_id"] == first.json()["token_id"]
    log = devservers.stats()["token_request_log"]
    assert [entry["status"] for entry in log] == [200, 401]
    assert "a wrong secret" not in proxy.output()
    assert DEMO_CLIENT_SECRET not in proxy.output()
