"""Fixtures for the hardening suite (issue 8): the tables of bad inputs, faults and secret hygiene,
and the soak's short run. Each module starts its dev servers and mitmdump once and runs every case
against them; the session's CA, certificates and processes are tests/support's (its fixtures).

Fixtures:
  launcher  module  Launcher: starts devservers and mitmdump, stops them after the module
When a test fails, the output of every process its module started is added to its report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.launch import Launcher
from tests.support.devservers import TlsFiles
from tests.support.fixtures import reported


@pytest.fixture(scope="module")
def launcher(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_ca: TlsFiles,
    mitm_confdir: Path,
) -> Iterator[Launcher]:
    workdir = tmp_path_factory.mktemp("hardening")
    started = Launcher(workdir, tls_ca, mitm_confdir, reported(request))
    yield started
    started.stop()
