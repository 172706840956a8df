"""The ASGI app hypercorn serves for h2_backend.py, in a module of its own so
that the server process imports nothing of the test harness: each request is answered with the
header names and the Authorization values it received and the HTTP version it was spoken in; a
WebSocket handshake is accepted and answered the same way in a first message, and every message
after it is echoed back."""

from __future__ import annotations

import json
from typing import Any


def _seen(scope: dict[str, Any]) -> bytes:
    headers = [(name.decode(), value.decode()) for name, value in scope["headers"]]
    seen = {
        "http_version": scope["http_version"],
        "header_names": [name for name, _ in headers],
        "authorization": [value for name, value in headers if name == "authorization"],
    }
    return json.dumps(seen).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": _seen(scope)})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": _seen(scope).decode()})
        while (event := await receive())["type"] == "websocket.receive":
            await send({**event, "type": "websocket.send"})
