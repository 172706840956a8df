"""scripts/ca: the CA and the environment variables that make clients trust the proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.devservers import DevServersProcess
from tests.support.procs import CURL
from tests.support.procs import subprocess_env
from tests.support.proxies import ProxyFactory

REPO = Path(__file__).resolve().parents[2]


def ca_exports(confdir: Path) -> dict[str, str]:
    done = subprocess.run(
        [str(REPO / "scripts" / "ca"), "--confdir", str(confdir), "--export"],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(OAUTH2_VENV=sys.prefix),  # this interpreter's environment
        check=True,
    )
    lines = [line.removeprefix("export ") for line in done.stdout.splitlines()]
    return dict(line.split("=", 1) for line in lines)


def test_exports_make_curl_trust_the_proxy(
    devservers_tls: DevServersProcess, mitmdump: ProxyFactory, mitm_confdir: Path
) -> None:
    exports = ca_exports(mitm_confdir)
    assert set(exports) == {
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
    }
    assert exports["NODE_EXTRA_CA_CERTS"] == str(mitm_confdir / "mitmproxy-ca-cert.pem")
    port = devservers_tls.backend_host.rsplit(":", 1)[1]
    proxy = mitmdump(devservers_tls.backend_toml(hosts=[f"localhost:{port}"]))
    url = f"https://localhost:{port}/orders"
    env = subprocess_env(CURL_CA_BUNDLE=exports["CURL_CA_BUNDLE"])
    done = subprocess.run(
        [CURL, "-q", "-sS", "-x", proxy.url, url],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    untrusted = subprocess.run(
        [CURL, "-q", "-sS", "-x", proxy.url, url],
        capture_output=True,
        text=True,
        timeout=20,
        env=subprocess_env(CURL_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"),
        check=False,
    )
    assert untrusted.returncode != 0  # without the exports, the proxy's CA is not trusted
