"""Helpers the hardening tests share: crowds of requests, bounded polling and what a correct
refusal looks like (RFC 9457 problem, nothing forwarded)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

import httpx
import pytest

from mitm_oauth2.problem import CONTENT_TYPE
from mitm_oauth2.problem import TOKEN_UNAVAILABLE
from tests.support.devservers import DevServersProcess
from tests.support.proxies import Proxy

T = TypeVar("T")


def crowd(
    proxy: Proxy,
    urls: list[str],
    timeout: float = 20,
    headers: Mapping[str, Mapping[str, str]] | None = None,
) -> list[httpx.Response]:
    """GETs every URL at once through `proxy`; the answers in the same order. `headers`: a
    URL's own request headers."""
    each = headers or {}

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(urls))
        async with proxy.async_client(limits=limits, timeout=timeout) as client:
            asked = (client.get(url, headers=each.get(url)) for url in urls)
            return list(await asyncio.gather(*asked))

    return asyncio.run(run())


def poll(check: Callable[[], T | None], what: str, timeout: float = 15, step: float = 0.1) -> T:
    """The first result of `check()` that is not None, polled every `step` s; fails the test
    with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(step)


def count_lines(proxy: Proxy, pattern: str) -> int:
    """Lines of the proxy's output (every run) in which the regex `pattern` is found."""
    regex = re.compile(pattern)
    return sum(1 for line in proxy.output().splitlines() if regex.search(line))


def wait_for_lines(proxy: Proxy, pattern: str, count: int, timeout: float = 15) -> None:
    """Waits until `count` lines of the proxy's output match `pattern` (the config watcher
    polls once a second)."""
    poll(lambda: count_lines(proxy, pattern) >= count or None, f"{count} x {pattern!r}", timeout)


def assert_problem(
    answer: httpx.Response, *, status: int, backend: str, cause: str
) -> dict[str, Any]:
    """A refusal by the proxy: RFC 9457 problem+json naming the backend and the cause."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE
    problem: dict[str, Any] = answer.json()
    assert problem["type"] == TOKEN_UNAVAILABLE
    assert (problem["status"], problem["backend"]) == (status, backend)
    assert cause in problem["detail"], problem
    assert ("retry-after" in answer.headers) == (status == 503)
    return problem


def backend_seen(servers: DevServersProcess, prefix: str) -> list[dict[str, Any]]:
    """What the protected backend received under the path `prefix`."""
    return [r for r in servers.backend_requests() if r["path"].startswith(prefix)]


def assert_served(answer: httpx.Response) -> str:
    """The backend answered 200 to a valid bearer token; returns the token's id."""
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True
    return str(body["token_id"])
