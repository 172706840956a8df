"""Shared pytest configuration for unit and integration tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make ``import mitm_oauth2`` work without installing the package.
ADDON_DIR = Path(__file__).resolve().parents[1] / "addon"
if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))
# ``import bench_lib.programs``: which Redis server and Node.js to start, the benchmark's rule.
# Appended, so that scripts/'s top-level modules shadow none of the tests' helpers.
SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "scripts"
if str(SCRIPTS_DIR) not in sys.path:
    sys.path.append(str(SCRIPTS_DIR))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only (anyio's plugin ships with httpx)."""
    return "asyncio"
