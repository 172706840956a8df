"""gRPC through the real mitmdump: grpcio's client reaches a grpcio server over TLS through the
proxy (its C core sends CONNECT, then speaks HTTP/2 inside the tunnel, trusting the proxy's CA),
and the server sees the token in the call's ``authorization`` metadata. The client is pointed at
the proxy by the channel option ``grpc.http_proxy`` or by the ``https_proxy`` environment
variable. HTTP/2 is spoken on both sides with either connection strategy: lazy, the scripts'
default (the token is fetched before the backend is connected to), and eager (ALPN is agreed
with the backend before the client's TLS handshake ends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.proxies import ProxyFactory

METHOD = "/demo.Echo/WhoAmI"


def _who_am_i(request: bytes, context: grpc.ServicerContext) -> bytes:
    """Answers with the call's authorization metadata and the request it was sent."""
    metadata = context.invocation_metadata()
    authorization = [value for key, value in metadata if key == "authorization"]
    return json.dumps({"authorization": authorization, "request": request.decode()}).encode()


@pytest.fixture
def grpc_port(tls_ca: TlsFiles) -> Iterator[int]:
    """A grpcio server on 127.0.0.1 with the test CA's certificate for localhost."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handlers = {"WhoAmI": grpc.unary_unary_rpc_method_handler(_who_am_i)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("demo.Echo", handlers)])
    key_and_chain = (tls_ca.server_key.read_bytes(), tls_ca.server_cert.read_bytes())
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([key_and_chain]))
    server.start()
    yield port
    server.stop(grace=None)


@pytest.mark.parametrize(
    ("via", "lazy"),
    [("channel-option", True), ("channel-option", False), ("https_proxy", True)],
    ids=["channel-option-lazy", "channel-option-eager", "https_proxy-lazy"],
)
def test_grpc_calls_through_the_proxy_carry_the_token(
    devservers: DevServersProcess,
    grpc_port: int,
    mitmdump: ProxyFactory,
    monkeypatch: pytest.MonkeyPatch,
    via: str,
    lazy: bool,
) -> None:
    target = f"localhost:{grpc_port}"
    config = devservers.backend_toml("rpc", hosts=[target])
    proxy = mitmdump(config, lazy=lazy)
    for name in ("grpc_proxy", "https_proxy", "http_proxy", "no_grpc_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    options = []
    if via == "https_proxy":
        monkeypatch.setenv("https_proxy", proxy.url)
    else:
        options.append(("grpc.http_proxy", proxy.url))
    credentials = grpc.ssl_channel_credentials(root_certificates=proxy.ca_cert.read_bytes())
    with grpc.secure_channel(target, credentials, options=options) as channel:
        who_am_i = channel.unary_unary(METHOD)
        answers = [
            who_am_i(b"first", timeout=10),
            who_am_i(b"second", metadata=[("authorization", "Bearer the-callers-own")], timeout=10),
            who_am_i(b"third", timeout=10),
        ]
    seen = [json.loads(answer) for answer in answers]
    assert [call["request"] for call in seen] == ["first", "second", "third"]
    (token,) = seen[0]["authorization"]
    assert token.startswith("Bearer ")
    assert all(call["authorization"] == [token] for call in seen)  # the caller's own replaced
    assert devservers.backend_client().get("/", headers={"Authorization": token}).json()["ok"]
    assert devservers.token_requests() == 1
