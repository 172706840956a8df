"""pytest plugin, loaded through the ``pytest11`` entry point ``mitm_oauth2``: installing the
package is enough (``-p no:mitm_oauth2`` turns it off).

Fixtures:
  oauth2_proxy          function  start(config, *extra_mitmdump_args, cache_dir=None,
                                        timeout=30) -> mitm_oauth2.testing.ProxyProcess
                                  config: TOML text (str) or a file (pathlib.Path). Each call
                                  starts the real mitmdump with the addon on a free 127.0.0.1
                                  port and waits until it listens; all are stopped at teardown.
  oauth2_proxy_confdir  session   Path: mitmproxy's confdir (its CA) shared by those proxies

A failed test's report gets a section with the output of every proxy it started. Nothing is
imported or started until a test asks for a fixture.
"""

from __future__ import annotations

from collections.abc import Generator
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

import pytest

if TYPE_CHECKING:
    from mitm_oauth2.testing import ProxyProcess
    from mitm_oauth2.testing import StrPath

_PROXIES = pytest.StashKey[list["ProxyProcess"]]()


class OAuth2ProxyFactory(Protocol):
    """The ``oauth2_proxy`` fixture's value."""

    def __call__(
        self,
        config: StrPath,
        *extra_args: str,
        cache_dir: StrPath | None = None,
        timeout: float = 30,
    ) -> ProxyProcess: ...


@pytest.fixture(scope="session")
def oauth2_proxy_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mitmproxy's confdir for the session's proxies: one CA, made by the first to start."""
    return tmp_path_factory.mktemp("oauth2-proxy-confdir")


@pytest.fixture
def oauth2_proxy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    oauth2_proxy_confdir: Path,
) -> Iterator[OAuth2ProxyFactory]:
    """Start mitmdump with the addon: ``proxy = oauth2_proxy(toml_text)``; ``proxy.url`` is
    the proxy for clients, ``proxy.ca_cert`` the CA they trust. Stopped at teardown."""
    from mitm_oauth2.testing import ProxyProcess

    started: list[ProxyProcess] = []

    def start(
        config: StrPath,
        *extra_args: str,
        cache_dir: StrPath | None = None,
        timeout: float = 30,
    ) -> ProxyProcess:
        proxy = ProxyProcess(
            config,
            *extra_args,
            confdir=oauth2_proxy_confdir,
            cache_dir=cache_dir,
            workdir=tmp_path_factory.mktemp("oauth2-proxy"),  # config file, cache: kept
            timeout=timeout,
            name=f"oauth2_proxy #{len(started) + 1}",
        )
        started.append(proxy)
        request.node.stash.setdefault(_PROXIES, []).append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    proxies = item.stash.get(_PROXIES, None)
    if not proxies:
        return
    report: pytest.TestReport = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for proxy in proxies:
            report.sections.append((f"{proxy.name} output", proxy.output()))
