"""The optional Prometheus endpoint: counters per backend, loopback by default, no secrets."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.metrics import MetricsEndpoint
from mitm_oauth2.testing import free_port
from mitm_oauth2.tokens.status import BackendCounters
from mitm_oauth2.tokens.status import BackendStatus
from mitm_oauth2.tokens.status import TokenPlace


def status(
    token: TokenPlace, left: float | None, *, store_ok: bool = True, **counters: object
) -> BackendStatus:
    age = None if left is None else 3600 - left
    return BackendStatus(
        token, False, age, left, "token cache /tmp/c", store_ok, BackendCounters(**counters)
    )


STATUS = {
    "billing": status(
        TokenPlace.MEMORY,
        3000.5,
        fetches=2,
        cache_hits=40,
        replays=1,
        failures={"invalid_client": 3, "http_503": 1},
        last_error="token endpoint answered HTTP 401 with error 'invalid_client'",
    ),
    "orders": status(TokenPlace.NONE, None, store_ok=False),
    "stock": status(TokenPlace.STORE, 1200.0),  # another process's token, in the store
}


def scrape(address: tuple[str, int]) -> str:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=10) as r:
        return r.read().decode()


@pytest.fixture
def endpoint() -> Iterator[MetricsEndpoint]:
    metrics = MetricsEndpoint(lambda: STATUS.items())
    yield metrics
    metrics.stop()


def test_counters_per_backend(endpoint: MetricsEndpoint) -> None:
    endpoint.serve("127.0.0.1", free_port())
    assert endpoint.address is not None
    text = scrape(endpoint.address)
    assert 'oauth2_token_fetches_total{backend="billing"} 2.0' in text
    assert 'oauth2_token_cache_hits_total{backend="billing"} 40.0' in text
    assert 'oauth2_token_replays_total{backend="billing"} 1.0' in text
    assert 'oauth2_token_failures_total{backend="billing",cause="invalid_client"} 3.0' in text
    assert 'oauth2_token_failures_total{backend="billing",cause="http_503"} 1.0' in text
    assert 'oauth2_token_present{backend="billing"} 1.0' in text
    assert 'oauth2_token_present{backend="orders"} 0.0' in text
    assert 'oauth2_token_present{backend="stock"} 0.0' in text
    assert 'oauth2_token_time_left_seconds{backend="billing"} 3000.5' in text
    assert 'oauth2_token_time_left_seconds{backend="stock"}' not in text
    assert 'oauth2_token_store_ok{backend="billing"} 1.0' in text
    assert 'oauth2_token_store_ok{backend="orders"} 0.0' in text
    assert "invalid_client'" not in text  # the last error's text is for oauth.status, not labels


def test_off_by_default_and_stops(endpoint: MetricsEndpoint) -> None:
    endpoint.serve("127.0.0.1", 0)
    assert endpoint.address is None
    endpoint.serve("127.0.0.1", free_port())
    address = endpoint.address
    assert address is not None
    endpoint.stop()
    with pytest.raises(urllib.error.URLError, match="refused"):
        scrape(address)


def test_addon_option(tmp_path) -> None:
    addon = OAuth2Backend()
    port = free_port()
    with taddons.context(addon) as tctx:
        assert addon.metrics.address is None
        tctx.configure(addon, oauth2_metrics_port=port)
        assert addon.metrics.address == ("127.0.0.1", port)
        assert "oauth2_token_fetches" in scrape(addon.metrics.address)
        with pytest.raises(exceptions.OptionsError, match="oauth2_metrics_port"):
            tctx.configure(addon, oauth2_metrics_port=70000)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            with pytest.raises(exceptions.OptionsError, match="cannot listen"):
                tctx.configure(addon, oauth2_metrics_port=taken)
        addon.metrics.done()  # mitmproxy calls done() on nested addons at shutdown
        assert addon.metrics.address is None
