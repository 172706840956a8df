"""Fixtures for the hardening suite (issue 8): the tables of bad inputs, faults and secret hygiene,
and the soak's short run. Each module starts its dev servers and mitmdump once, through the
integration harness (tests/integration), and runs every case against them.

Fixtures:
  hardening_tls      session  TlsFiles: a test CA and a certificate for localhost/127.0.0.1
  hardening_confdir  session  Path: mitmproxy confdir with its CA, shared by the tables' proxies
  launcher           module   Launcher: starts devservers and mitmdump, stops them after the module
Modules that start processes of their own register them with
`fault_rig.report_output(request, process)`.
When a test fails, the output of every process its module started is added to its report.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The integration harness (processes) and the unit tests' config helpers, reused here.
sys.path.insert(0, str(HERE.parent / "unit"))
sys.path.insert(0, str(HERE.parent / "integration"))

from fault_rig import PROCESSES  # noqa: E402
from harness import TlsFiles  # noqa: E402
from harness import make_tls_files  # noqa: E402
from launch import Launcher  # noqa: E402
from proxies import create_ca  # noqa: E402

_LAUNCHER = pytest.StashKey[Launcher]()


@pytest.fixture(scope="session")
def hardening_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("hardening-tls"))


@pytest.fixture(scope="session")
def hardening_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_ca(tmp_path_factory.mktemp("hardening-confdir"))


@pytest.fixture(scope="module")
def launcher(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    hardening_tls: TlsFiles,
    hardening_confdir: Path,
) -> Iterator[Launcher]:
    started = Launcher(tmp_path_factory.mktemp("hardening"), hardening_tls, hardening_confdir)
    request.node.stash[_LAUNCHER] = started
    yield started
    started.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.failed or report.when not in ("setup", "call"):
        return report
    module = item.getparent(pytest.Module)
    started = module.stash.get(_LAUNCHER, None) if module is not None else None
    if started is not None:
        for name, output in started.outputs():
            report.sections.append((f"{name} output", output))
    for node in item.listchain():
        for process in node.stash.get(PROCESSES, []):
            report.sections.append((f"{process.name} output", process.output()))
    return report
