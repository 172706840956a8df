"""Fixtures for the hardening tables (issue 8): each table starts its dev servers and one mitmdump
once, through the integration harness (tests/integration), and runs every case against them.

Fixtures:
  hardening_tls      session  TlsFiles: a test CA and a certificate for localhost/127.0.0.1
  hardening_confdir  session  Path: mitmproxy confdir with its CA, shared by the tables' proxies
  launcher           module   Launcher: starts devservers and mitmdump, stops them after the module
When a test fails, the output of every process its module started is added to its report.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from collections.abc import Iterator
from pathlib import Path

import pytest

# The integration harness (processes) and the unit tests' config helpers, reused here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from harness import TlsFiles
from harness import make_tls_files
from launch import Launcher
from proxies import create_ca

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    module = item.getparent(pytest.Module)
    started = module.stash.get(_LAUNCHER, None) if module is not None else None
    if report.failed and started is not None:
        for name, output in started.outputs():
            report.sections.append((f"{name} output", output))
    return report
