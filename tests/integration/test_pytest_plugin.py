"""The package's test harness: the pytest plugin's ``oauth2_proxy`` fixture (active here through
its pytest11 entry point, as for any suite with the package installed) and ProxyProcess.

The httpx and requests tests are the examples of docs/testing.md (the README shows the httpx one),
pointed at the devservers."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import httpx
import pytest
import requests

import mitm_oauth2.pytest_plugin
from mitm_oauth2.pytest_plugin import OAuth2ProxyFactory
from mitm_oauth2.testing import ProxyNotReady
from mitm_oauth2.testing import ProxyProcess
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.procs import curl
from tests.support.procs import subprocess_env

pytest_plugins = ["pytester"]


def upstream_trusts(tls_ca: TlsFiles) -> tuple[str, str]:
    """mitmproxy verifies the devservers' HTTPS backend, whose certificate is from a test CA."""
    return ("--set", f"ssl_verify_upstream_trusted_ca={tls_ca.ca_cert}")


def test_the_plugin_is_loaded_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("mitm_oauth2") is mitm_oauth2.pytest_plugin


def test_httpx_through_the_fixture(
    devservers_tls: DevServersProcess, tls_ca: TlsFiles, oauth2_proxy: OAuth2ProxyFactory
) -> None:
    proxy = oauth2_proxy(devservers_tls.backend_toml("billing"), *upstream_trusts(tls_ca))
    with httpx.Client(proxy=proxy.url, verify=proxy.ssl_context()) as client:
        response = client.get(f"{devservers_tls.backend_url}/invoices")
    assert response.status_code == 200, response.text
    assert proxy.ca_cert == proxy.confdir / "mitmproxy-ca-cert.pem"
    (received,) = devservers_tls.backend_requests()
    assert received["authorization"][0].startswith("Bearer ")


def test_requests_through_the_fixture(
    devservers_tls: DevServersProcess, tls_ca: TlsFiles, oauth2_proxy: OAuth2ProxyFactory
) -> None:
    proxy = oauth2_proxy(devservers_tls.backend_toml("billing"), *upstream_trusts(tls_ca))
    response = requests.get(
        f"{devservers_tls.backend_url}/invoices",
        proxies={"http": proxy.url, "https": proxy.url},
        verify=str(proxy.ca_cert),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert devservers_tls.token_requests() == 1


def test_curl_with_the_client_environment(
    devservers_tls: DevServersProcess, tls_ca: TlsFiles, oauth2_proxy: OAuth2ProxyFactory
) -> None:
    """No -x, no --cacert: https_proxy and CURL_CA_BUNDLE from client_env() do it."""
    proxy = oauth2_proxy(devservers_tls.backend_toml("billing"), *upstream_trusts(tls_ca))
    env = {**subprocess_env(), **proxy.client_env()}
    assert env["NODE_EXTRA_CA_CERTS"] == env["SSL_CERT_FILE"] == str(proxy.ca_cert)
    done = curl(f"{devservers_tls.backend_url}/invoices", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert devservers_tls.token_requests() == 1


def test_a_config_file_two_proxies_one_ca_and_a_shared_cache(
    devservers: DevServersProcess, oauth2_proxy: OAuth2ProxyFactory, tmp_path: Path
) -> None:
    config = tmp_path / "backends.toml"
    config.write_text(devservers.backend_toml("orders"), encoding="utf-8")
    first = oauth2_proxy(config, cache_dir=tmp_path / "cache")
    second = oauth2_proxy(config, cache_dir=tmp_path / "cache")
    assert first.port != second.port
    assert first.ca_cert == second.ca_cert
    assert first.ca_cert.is_file()
    for proxy in (first, second):
        with httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as client:
            assert client.get(f"{devservers.backend_url}/orders").status_code == 200
    assert devservers.token_requests() == 1  # the second proxy found the token in the cache
    assert "listening at 127.0.0.1:" in second.output()


def test_config_text_that_is_a_file_name_is_refused(oauth2_proxy: OAuth2ProxyFactory) -> None:
    with pytest.raises(TypeError, match=r"pathlib\.Path"):
        oauth2_proxy("backends.toml")


def test_proxy_process_alone_cleans_up_its_temporary_directory(
    devservers: DevServersProcess,
) -> None:
    with ProxyProcess(devservers.backend_toml("orders")) as proxy:
        assert proxy.ca_cert.is_file()  # a CA of its own, made in a temporary confdir
        with httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as client:
            assert client.get(f"{devservers.backend_url}/orders").status_code == 200
        proxy.wait_for_output(r"oauth2: 1 backend\(s\) from ")
    assert proxy.returncode is not None
    assert not proxy.confdir.exists()
    assert not proxy.config_path.exists()


def test_a_bad_config_raises_with_mitmdump_output(tmp_path: Path) -> None:
    proxy = ProxyProcess("[[backend]]\nname = 'x\n", workdir=tmp_path, timeout=30)
    with pytest.raises(
        ProxyNotReady, match=r"(?s)exited at start-up \(exit code 1\).*invalid TOML"
    ):
        proxy.start()
    assert proxy.returncode not in (None, 0)


def test_a_failing_test_shows_the_proxy_log_and_every_proxy_is_stopped(
    pytester: pytest.Pytester, devservers: DevServersProcess
) -> None:
    """A fresh pytest run in a folder of its own: only the entry point brings the fixture."""
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import httpx

            CONFIG = {devservers.backend_toml("orders")!r}

            def test_passes(oauth2_proxy):
                proxy = oauth2_proxy(CONFIG)
                open("passing.pid", "w").write(str(proxy.proc.pid))

            def test_fails(oauth2_proxy):
                proxy = oauth2_proxy(CONFIG)
                open("failing.pid", "w").write(str(proxy.proc.pid))
                with httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as client:
                    status = client.get({devservers.backend_url + "/orders"!r}).status_code
                assert status == 418, "fails on purpose"
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails _*",
            "*fails on purpose*",
            "*- oauth2_proxy #1 output -*",
            "*oauth2: 1 backend(s) from *backends.toml: orders*",
            "*listening at 127.0.0.1:*",
            "*backend orders: fetched token*",
        ]
    )
    assert result.stdout.str().count("oauth2_proxy #1 output") == 1  # not for the passing one
    for name in ("passing.pid", "failing.pid"):
        pid = int((pytester.path / name).read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def docs_python_block(first_line: str) -> str:
    """The Python example of docs/testing.md that opens with `first_line`."""
    page = (Path(__file__).parents[2] / "docs" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    (block,) = [block for block in blocks if block.startswith(first_line + "\n")]
    return block


def test_the_docs_devservers_fixture_runs_as_written(pytester: pytest.Pytester) -> None:
    """The conftest.py and test file of docs/testing.md for `python -m mitm_oauth2.devservers`,
    run by a fresh pytest in a folder of its own."""
    pytester.makeconftest(docs_python_block("# conftest.py"))
    pytester.makepyfile(test_orders=docs_python_block("# test_orders.py"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
