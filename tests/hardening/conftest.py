"""Fixtures for the hardening suite: faults survived, secret hygiene, the soak's short run.

These tests drive the real mitmdump with the dev servers on loopback, like tests/integration,
whose helpers (harness, proxies, procs) they import and whose session fixtures they reuse:

  hardening_tls      session  TlsFiles: a test CA and a server certificate for 127.0.0.1
  hardening_confdir  session  Path: mitmproxy's confdir, its CA made once

Module-scoped processes register with `bench.report_output(request, process)`: a failed test's
report then shows their output, as tests/integration does for its function-scoped ones.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Generator
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
if str(INTEGRATION) not in sys.path:  # procs, harness, proxies: the integration helpers
    sys.path.insert(0, str(INTEGRATION))

from bench import PROCESSES  # noqa: E402
from harness import TlsFiles  # noqa: E402


def _load_integration_conftest() -> ModuleType:
    """tests/integration/conftest.py under a name of its own, to share its fixtures."""
    spec = importlib.util.spec_from_file_location(
        "hardening_integration_conftest", INTEGRATION / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_integration = _load_integration_conftest()
tls_ca = _integration.tls_ca
mitm_confdir = _integration.mitm_confdir


@pytest.fixture(scope="session")
def hardening_tls(tls_ca: TlsFiles) -> TlsFiles:
    return tls_ca


@pytest.fixture(scope="session")
def hardening_confdir(mitm_confdir: Path) -> Path:
    return mitm_confdir


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call") and item.path.is_relative_to(HERE):
        for node in item.listchain():
            for process in node.stash.get(PROCESSES, []):
                report.sections.append((f"{process.name} output", process.output()))
    return report
