"""An optional Prometheus endpoint (`oauth2_metrics_port`), for mitmdump run as a service.

The counters are read from the broker when Prometheus scrapes, so requests pay nothing for it.
Labels are backend names and failure causes: never a token, a secret or a cache key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Set
from wsgiref.simple_server import WSGIServer

from mitmproxy import addonmanager
from mitmproxy import ctx
from mitmproxy import exceptions
from prometheus_client import CollectorRegistry
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from .startup import fatal_at_startup
from .tokens.status import BackendStatus
from .tokens.status import TokenPlace

logger = logging.getLogger(__name__)

# (backend name, its status) per configured backend: the addon's `statuses`
StatusSource = Callable[[], Iterable[tuple[str, BackendStatus]]]


class TokenCollector(Collector):
    def __init__(self, source: StatusSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        fetches = CounterMetricFamily(
            "oauth2_token_fetches", "Token requests that succeeded", labels=["backend"]
        )
        hits = CounterMetricFamily(
            "oauth2_token_cache_hits", "Requests served a token already held", labels=["backend"]
        )
        replays = CounterMetricFamily(
            "oauth2_token_replays", "Requests replayed once after a 401", labels=["backend"]
        )
        failures = CounterMetricFamily(
            "oauth2_token_failures", "Failed token requests", labels=["backend", "cause"]
        )
        present = GaugeMetricFamily(
            "oauth2_token_present", "1 if a valid token is held", labels=["backend"]
        )
        left = GaugeMetricFamily(
            "oauth2_token_time_left_seconds",
            "Seconds until the held token expires",
            labels=["backend"],
        )
        store_ok = GaugeMetricFamily(
            "oauth2_token_store_ok",
            "1 while the token store (disk cache or Redis) works; 0 while tokens are kept in "
            "this process instead",
            labels=["backend"],
        )
        callers = GaugeMetricFamily(
            "oauth2_exchange_callers",
            "token_exchange: callers whose tokens this process remembers",
            labels=["backend"],
        )
        for backend, status in self._source():
            if status.callers is not None:
                callers.add_metric([backend], status.callers)
            counters = status.counters
            fetches.add_metric([backend], counters.fetches)
            hits.add_metric([backend], counters.cache_hits)
            replays.add_metric([backend], counters.replays)
            for cause, count in counters.failures.items():
                failures.add_metric([backend, cause], count)
            # Held: in this process's memory. A token only in the store is not, nor its time left.
            held = status.token is TokenPlace.MEMORY
            present.add_metric([backend], 1.0 if held else 0.0)
            store_ok.add_metric([backend], 1.0 if status.store_ok else 0.0)
            if held and status.token_left_s is not None:
                left.add_metric([backend], status.token_left_s)
        yield from (fetches, hits, replays, failures, present, left, store_ok, callers)


class MetricsEndpoint:
    """The HTTP server Prometheus scrapes, and its options; OAuth2Backend hands it load, configure
    and done. prometheus-client serves it from its own thread."""

    def __init__(self, source: StatusSource) -> None:
        self._registry = CollectorRegistry()
        self._registry.register(TokenCollector(source))
        self._server: WSGIServer | None = None
        self.address: tuple[str, int] | None = None

    def load(self, loader: addonmanager.Loader) -> None:
        loader.add_option(
            "oauth2_metrics_port",
            int,
            0,
            """
            Port of a Prometheus endpoint (/metrics) with per-backend token counters;
            0 (the default) serves none.
            """,
        )
        loader.add_option(
            "oauth2_metrics_host",
            str,
            "127.0.0.1",
            "Address the Prometheus endpoint listens on (default: loopback only).",
        )

    @fatal_at_startup
    def configure(self, updated: Set[str]) -> None:
        if not {"oauth2_metrics_port", "oauth2_metrics_host"} & updated:
            return
        host, port = ctx.options.oauth2_metrics_host, ctx.options.oauth2_metrics_port
        if not 0 <= port < 65536:
            raise exceptions.OptionsError("oauth2_metrics_port: must be 0 (off) to 65535")
        try:
            self.serve(host, port)
        except OSError as e:
            raise exceptions.OptionsError(
                f"oauth2_metrics_port: cannot listen on {host}:{port} ({e.strerror or e})"
            ) from e

    def done(self) -> None:
        self.stop()

    def serve(self, host: str, port: int) -> None:
        """Listens on host:port (port 0: none); raises OSError when it cannot bind."""
        self.stop()
        if port == 0:
            return
        server, _ = start_http_server(port, addr=host, registry=self._registry)
        self._server = server
        self.address = (host, server.server_port)
        logger.info("oauth2: Prometheus metrics at http://%s:%d/metrics", host, server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server, self.address = None, None
