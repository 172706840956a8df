"""Helpers for the token request tests: a recording MockTransport handler, canned answers (one
echoing what was posted), `ask`, which sends one token request through a TokenClient on that
transport, and `refused`, the same for a request that must fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from mitm_oauth2.client.token_client import TokenClient
from mitm_oauth2.model.errors import TokenError

SECRET = "p@ss:w+rd/%=é"
GOOD = {"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}


class Recorder:
    """A MockTransport handler: answers with `answer(request)` and keeps every request."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def json_answer(status: int, document: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=document)


def echoing(
    status: int, error: str, field: str, says: str
) -> Callable[[httpx.Request], httpx.Response]:
    """An error answer whose error_description is `says` and then the posted form field `field`,
    as a server that echoes what it got."""

    def echo(request: httpx.Request) -> httpx.Response:
        posted = form(request)[field][0]
        return httpx.Response(status, json={"error": error, "error_description": says + posted})

    return echo


async def ask(
    handler: Callable[[httpx.Request], httpx.Response],
    grant: Any,
    refresh_token: str | None = None,
    **kwargs: Any,
):
    """One token request for `grant` (with the user's `refresh_token`, if given)."""
    client = TokenClient(transport=httpx.MockTransport(handler), **kwargs)
    try:
        return await client.request_token(grant.credentials, grant.subject, refresh_token)
    finally:
        await client.aclose()


async def refused(
    handler: Callable[[httpx.Request], httpx.Response],
    grant: Any,
    refresh_token: str | None = None,
    **kwargs: Any,
) -> TokenError:
    """The TokenError that `ask` must raise."""
    with pytest.raises(TokenError) as info:
        await ask(handler, grant, refresh_token, **kwargs)
    return info.value


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode("ascii"), keep_blank_values=True, strict_parsing=True)
