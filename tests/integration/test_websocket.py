"""WebSocket through the real mitmdump: a client (the `websockets` package) that opens wss://
connections through the proxy (CONNECT, then TLS with the proxy's CA) to a real WebSocket
server (hypercorn). The handshake is an HTTP request, so it carries the token; the messages
after it flow both ways untouched. The client is websockets' asyncio one, its main API."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from tests.support.devservers import DevServersProcess
from tests.support.h2_backend import H2Backend
from tests.support.proxies import ProxyFactory


@pytest.mark.anyio
async def test_each_websocket_handshake_carries_the_token_and_messages_flow_both_ways(
    devservers: DevServersProcess, h2_backend: H2Backend, mitmdump: ProxyFactory
) -> None:
    config = devservers.backend_toml("events", hosts=[h2_backend.host])
    proxy = mitmdump(config)
    url = h2_backend.url.replace("https://", "wss://") + "/events"
    seen, echoes = [], []
    for n, own in enumerate([None, "Bearer the-callers-own"]):
        headers = {"Authorization": own} if own else None
        async with connect(
            url, proxy=proxy.url, ssl=proxy.ssl_context(), additional_headers=headers
        ) as websocket:
            async with asyncio.timeout(10):
                seen.append(json.loads(await websocket.recv()))
                await websocket.send(f"hello {n}")
                echoes.append(await websocket.recv())
    assert echoes == ["hello 0", "hello 1"]
    (first,), (second,) = (handshake["authorization"] for handshake in seen)
    assert first.startswith("Bearer ")
    assert second == first  # the caller's own value was replaced, not added to
    assert devservers.backend_client().get("/", headers={"Authorization": first}).json()["ok"]
    assert devservers.token_requests() == 1
