"""HTTP/2 end to end through the real mitmdump: a client that speaks HTTP/2 to the proxy, a
backend that speaks it too (hypercorn), the token set the way HTTP/2 wants header names (lower
case), so mitmproxy has nothing to correct and logs nothing per request."""

from __future__ import annotations

import httpx
import pytest

from tests.support.devservers import DevServersProcess
from tests.support.h2_backend import H2Backend
from tests.support.proxies import ProxyFactory


@pytest.mark.parametrize("client_http2", [True, False], ids=["h2-client", "h1-client"])
def test_the_token_reaches_an_http2_backend_without_a_warning_per_request(
    devservers: DevServersProcess,
    h2_backend: H2Backend,
    mitmdump: ProxyFactory,
    client_http2: bool,
) -> None:
    config = devservers.backend_toml("orders", hosts=[h2_backend.host])
    proxy = mitmdump(config, lazy=False)  # eager: ALPN h2 is agreed with both sides
    client = httpx.Client(
        proxy=proxy.url, verify=proxy.ssl_context(), http2=client_http2, trust_env=False
    )
    with client:
        answers = [client.get(f"{h2_backend.url}/orders/{n}") for n in range(3)]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.http_version == ("HTTP/2" if client_http2 else "HTTP/1.1")
        seen = answer.json()
        assert seen["http_version"] == ("2" if client_http2 else "1.1")
        (value,) = seen["authorization"]
        assert value.startswith("Bearer ")
    assert devservers.token_requests() == 1
    assert "Lowercased" not in proxy.output()
