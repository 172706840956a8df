"""Host confusion through the real mitmdump: a token goes only to the configured target.

The proxy runs in upstream mode in front of a recording loopback server, so any host name can be
asked for without DNS: the recorder sees every request mitmproxy forwards, in absolute form, with
whatever Authorization it carries. Requests are sent as raw bytes, exactly as written here (case,
trailing dots, several Host headers). Each case says what must happen:

- "token": forwarded with exactly one `Authorization: Bearer <a token the dev server issued>`;
- "none": forwarded as the caller sent it, without a token;
- "421": answered with a problem document, nothing forwarded (the Host header names another
  server than the one the request goes to: a shared front end would route the token there);
- "403": answered with a problem document, nothing forwarded (plain HTTP beyond loopback would
  carry the token in clear, and the backend does not set allow_plain_http);
- "400": refused by mitmproxy as a malformed request, nothing forwarded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hardening.launch import Launcher
from tests.hardening.launch import RecordingServer
from tests.hardening.launch import raw_request
from tests.support.devservers import DevServersProcess
from tests.support.devservers import token_id
from tests.support.devservers import toml_backend
from tests.support.proxies import Proxy

pytestmark = pytest.mark.integration

HOSTS = {
    "api": ["api.example.com"],
    "idn": ["bücher.example"],
    "v6": ["[::1]:8443"],
    "ip": ["10.1.2.3:8080"],
    "wild": ["*.wild.example"],
    "svc": ["svc.example:8443"],
}
# The recorder speaks plain HTTP, so these backends allow it; this one does not.
STRICT = {"strict": ["strict.example", "strict.example:8080"]}

BAD_INPUTS = [
    # Equal to a configured host modulo case, trailing dot, IDNA, IP notation: the target.
    pytest.param("http://API.EXAMPLE.COM/x", None, "token", id="upper-case-host"),
    pytest.param("http://api.example.com./x", None, "token", id="trailing-dot"),
    pytest.param("http://Api.Example.Com.:80/x", None, "token", id="mixed-case-dot-default-port"),
    pytest.param("http://xn--bcher-kva.example/x", None, "token", id="idn-punycode"),
    pytest.param("http://XN--BCHER-KVA.EXAMPLE/x", None, "token", id="idn-punycode-upper"),
    pytest.param("http://[::1]:8443/x", None, "token", id="ipv6-literal-port"),
    pytest.param("http://[0:0:0:0:0:0:0:1]:8443/x", None, "token", id="ipv6-uncompressed"),
    pytest.param("http://10.1.2.3:8080/x", None, "token", id="ipv4-literal-port"),
    pytest.param("http://a.b.wild.example/x", None, "token", id="wildcard-deep-subdomain"),
    # Look-alikes, other ports and schemes: not the target, no token.
    pytest.param("http://api.example.com.evil.test/x", None, "none", id="look-alike-suffix"),
    pytest.param("http://evilapi.example.com/x", None, "none", id="look-alike-prefix"),
    pytest.param("http://api-example.com/x", None, "none", id="look-alike-dash"),
    pytest.param("http://x.api.example.com/x", None, "none", id="subdomain-of-exact-host"),
    pytest.param("http://example.com/x", None, "none", id="parent-domain"),
    pytest.param("http://api.example.com:8080/x", None, "none", id="same-host-other-port"),
    pytest.param("http://api.example.com:443/x", None, "none", id="https-port-over-http"),
    pytest.param("http://svc.example/x", None, "none", id="configured-port-omitted"),
    pytest.param("http://xn--pi-6kc.example.com/x", None, "none", id="idn-homograph-cyrillic"),
    pytest.param("http://bucher.example/x", None, "none", id="idn-without-diacritic"),
    pytest.param("http://[::1]:8444/x", None, "none", id="ipv6-other-port"),
    pytest.param("http://[::ffff:10.1.2.3]:8080/x", None, "none", id="ipv4-mapped-ipv6"),
    pytest.param("http://10.1.2.30:8080/x", None, "none", id="ipv4-longer-literal"),
    pytest.param("http://wild.example/x", None, "none", id="wildcard-apex"),
    pytest.param("http://evilwild.example/x", None, "none", id="wildcard-look-alike"),
    pytest.param("http://evil.test/x", ["api.example.com"], "none", id="host-header-names-backend"),
    # The Host header names another server than the target: refused, nothing forwarded.
    pytest.param("http://api.example.com/x", ["evil.test"], "421", id="host-header-differs"),
    pytest.param(
        "http://api.example.com/x", ["api.example.com:8080"], "421", id="host-header-other-port"
    ),
    pytest.param(
        "http://api.example.com/x",
        ["api.example.com", "evil.test"],
        "421",
        id="two-host-headers",
    ),
    pytest.param("http://10.1.2.3:8080/x", ["api.example.com"], "421", id="ip-target-named-host"),
    # Plain HTTP to a backend that does not allow it: refused before any token is asked for.
    pytest.param("http://strict.example/x", None, "403", id="plain-http-not-allowed"),
    pytest.param("http://STRICT.example.:8080/x", None, "403", id="plain-http-other-spelling"),
    # Userinfo in the request target: mitmproxy refuses the request line.
    pytest.param("http://user:pw@api.example.com/x", None, "400", id="userinfo-in-url"),
    pytest.param("http://api.example.com@evil.test/x", None, "400", id="userinfo-look-alike"),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def routed(launcher: Launcher, upstream: RecordingServer) -> tuple[DevServersProcess, Proxy]:
    servers = launcher.devservers()
    config = "".join(
        toml_backend(
            name=name,
            hosts=hosts,
            token_url=servers.token_url,
            client_id="demo-client",
            client_secret="demo secret with : % + & chars",
            **({} if name in STRICT else {"allow_plain_http": True}),
        )
        for name, hosts in (HOSTS | STRICT).items()
    )
    return servers, launcher.proxy(config, mode=f"upstream:{upstream.url}")


def _request(target: str, hosts: list[str] | None) -> bytes:
    if hosts is None:
        hosts = [target.split("/")[2]]
    lines = [f"GET {target} HTTP/1.1", *(f"Host: {h}" for h in hosts), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(("target", "hosts", "expected"), BAD_INPUTS)
def test_a_token_goes_only_to_the_configured_target(
    routed: tuple[DevServersProcess, Proxy],
    upstream: RecordingServer,
    target: str,
    hosts: list[str] | None,
    expected: str,
) -> None:
    servers, proxy = routed
    upstream.take()
    status, headers, body = raw_request(proxy.port, _request(target, hosts))
    received = upstream.take()
    if expected in ("token", "none"):
        assert status == 200, body
        (forwarded,) = received
        assert forwarded["target"].endswith("/x")
    if expected == "token":
        (value,) = forwarded["authorization"]
        scheme, _, token = value.partition(" ")
        issued = {entry["token_id"] for entry in servers.token_log()}
        assert scheme == "Bearer"
        assert token_id(token) in issued
    elif expected == "none":
        assert forwarded["authorization"] == []
    elif expected in ("421", "403"):
        assert received == []
        assert headers["content-type"] == "application/problem+json"
        problem: dict[str, Any] = json.loads(body)
        assert problem["status"] == status == int(expected)
        assert ("names" if expected == "421" else "unencrypted") in problem["detail"]
        assert problem["backend"] in (HOSTS if expected == "421" else STRICT)
    else:
        assert (status, received) == (400, [])
