"""Requests a caller may send, through the real mitmdump to an HTTPS backend (CONNECT, TLS with
the proxy's CA): several or lower-case Authorization headers, HTTP/2, huge headers, a Host,
`:authority` or SNI naming another server. The backend's log (the dev servers record every
Authorization header they receive) says what was forwarded; the caller's answer says why not.

- "ours": forwarded with exactly one Authorization, the proxy's Bearer token, accepted;
- "421": answered with a problem document (the request names another server), nothing forwarded;
- any other number: that status from mitmproxy itself, nothing forwarded (0: it reset the HTTP/2
  stream or closed the connection, as it does for an `:authority` and a `host` that disagree).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.hardening.launch import Launcher
from tests.hardening.launch import raw_h2_request
from tests.hardening.launch import raw_tunnel_request
from tests.support.devservers import DevServersProcess
from tests.support.proxies import Proxy

pytestmark = pytest.mark.integration

Answer = tuple[int, dict[str, str], bytes]
Send = Callable[[Proxy, int], Answer]
HOST = "localhost"  # the test certificate's name; the backend listens on 127.0.0.1
BIG = "x" * 60_000  # the dev backend (http.server) takes header lines up to 64 KiB


def httpx_get(headers: list[tuple[str, str]]) -> Send:
    """httpx through the proxy. (Not for HTTP/2: through a proxy httpx offers http/1.1 first in
    ALPN, and mitmproxy takes the client's first choice.)"""

    def send(proxy: Proxy, port: int) -> Answer:
        with proxy.client() as client:
            answer = client.get(f"https://{HOST}:{port}/x", headers=headers)
        return answer.status_code, dict(answer.headers), answer.content

    return send


def tunnel(*lines: str, sni: str | None = None) -> Send:
    """Raw HTTP/1 bytes inside a CONNECT tunnel to the backend; `{port}` is filled in."""

    def send(proxy: Proxy, port: int) -> Answer:
        text = "\r\n".join([*lines, "Connection: close", "", ""]).format(port=port)
        return raw_tunnel_request(proxy, HOST, port, text.encode(), sni=sni)

    return send


def h2(*headers: tuple[str, str]) -> Send:
    """Raw HTTP/2 headers (after :method, :scheme, :path) in a CONNECT tunnel (ALPN h2);
    a stream the proxy resets answers status 0."""

    def send(proxy: Proxy, port: int) -> Answer:
        start = [(":method", "GET"), (":scheme", "https"), (":path", "/x")]
        filled = [(k, v.format(port=port)) for k, v in headers]
        return raw_h2_request(proxy, HOST, port, start + filled)

    return send


GET = "GET /x HTTP/1.1"
HOST_LINE = "Host: localhost:{port}"
AUTHORITY = (":authority", "localhost:{port}")

BAD_INPUTS = [
    pytest.param(
        httpx_get([("Authorization", "Basic YTpi"), ("Authorization", "Bearer caller")]),
        "ours",
        id="several-authorization-headers",
    ),
    pytest.param(
        tunnel(GET, HOST_LINE, "authorization: Bearer caller"),
        "ours",
        id="lower-case-authorization",
    ),
    pytest.param(
        tunnel(GET, HOST_LINE, "AUTHORIZATION: Basic YTpi", "authorization: Bearer caller"),
        "ours",
        id="mixed-case-authorization-copies",
    ),
    pytest.param(tunnel(GET, HOST_LINE, "Authorization:"), "ours", id="empty-authorization"),
    pytest.param(
        tunnel(GET, HOST_LINE, f"Authorization: Bearer {BIG}"), "ours", id="huge-authorization"
    ),
    pytest.param(
        tunnel(GET, HOST_LINE, *(f"X-Filler-{i}: {BIG}" for i in range(4))),
        "ours",
        id="huge-headers-240k",
    ),
    pytest.param(
        tunnel(GET, HOST_LINE, *(f"X-Many-{i}: {i}" for i in range(80))), "ours", id="many-headers"
    ),
    pytest.param(tunnel("GET /x HTTP/1.0"), "ours", id="http10-without-host"),
    # Header lines a lenient server might read as another Authorization, or as part of Host.
    pytest.param(
        tunnel(GET, HOST_LINE, "Authorization : Bearer caller"), 400, id="space-before-colon"
    ),
    pytest.param(
        tunnel(GET, HOST_LINE, "Authorization\t: Bearer caller"), 400, id="tab-before-colon"
    ),
    pytest.param(
        tunnel(GET, HOST_LINE, "Authorization: Bearer caller\r\n Bearer folded"),
        "ours",
        id="obs-folded-authorization",
    ),
    pytest.param(
        tunnel(GET, HOST_LINE, " Authorization: Bearer caller"), "421", id="obs-fold-into-host"
    ),
    pytest.param(tunnel(GET, "Host: evil.test"), "421", id="tunnel-host-differs"),
    pytest.param(tunnel(GET, "Host: localhost:1"), "421", id="tunnel-host-other-port"),
    pytest.param(tunnel(GET, HOST_LINE, "Host: evil.test"), "421", id="tunnel-two-hosts"),
    pytest.param(
        tunnel("GET https://evil.test/x HTTP/1.1", HOST_LINE),
        "421",
        id="tunnel-absolute-form-elsewhere",
    ),
    pytest.param(tunnel(GET, HOST_LINE, sni="evil.test"), 502, id="tls-sni-differs"),
    pytest.param(h2(AUTHORITY), "ours", id="http2"),
    pytest.param(
        h2(AUTHORITY, ("authorization", "Basic YTpi"), ("authorization", "Bearer caller")),
        "ours",
        id="http2-several-authorization",
    ),
    pytest.param(
        h2(AUTHORITY, ("authorization", f"Bearer {BIG}")), "ours", id="http2-huge-authorization"
    ),
    pytest.param(
        h2(AUTHORITY, ("Authorization", "Bearer caller")), "ours", id="http2-upper-case-header-name"
    ),
    pytest.param(h2((":authority", "evil.test")), "421", id="http2-authority-differs"),
    pytest.param(h2((":authority", "localhost:1")), "421", id="http2-authority-other-port"),
    pytest.param(
        h2(AUTHORITY, ("host", "evil.test")), 0, id="http2-host-header-differs-from-authority"
    ),
    pytest.param(h2(("host", "evil.test")), "421", id="http2-host-header-without-authority"),
]


@pytest.fixture(scope="module")
def served(launcher: Launcher) -> tuple[DevServersProcess, Proxy, int]:
    servers = launcher.devservers(tls=True)
    port = int(servers.backend_host.rsplit(":", 1)[1])
    proxy = launcher.proxy(servers.backend_toml("api", hosts=[f"{HOST}:{port}"]))
    return servers, proxy, port


@pytest.mark.parametrize(("send", "expected"), BAD_INPUTS)
def test_only_the_proxys_token_reaches_the_backend(
    served: tuple[DevServersProcess, Proxy, int], send: Send, expected: str | int
) -> None:
    servers, proxy, port = served
    before = len(servers.backend_requests())
    status, headers, body = send(proxy, port)
    received = servers.backend_requests()[before:]
    if expected == "ours":
        assert status == 200, body
        (entry,) = received
        (value,) = entry["authorization"]
        assert value.startswith("Bearer ")
        assert entry["ok"] is True
    elif expected == "421":
        assert status == 421, body
        assert headers["content-type"] == "application/problem+json"
        problem = json.loads(body)
        assert problem["backend"] == "api"
        assert "names" in problem["detail"]
        assert received == []
    else:
        assert (status, received) == (expected, [])
