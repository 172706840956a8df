"""Shared pytest configuration for all the suites: tests/support's fixtures and the anyio backend.

``tests`` and its folders are packages: pytest imports them under ``tests.`` from the checkout,
so the suites share tests/support by importing it (``mitm_oauth2`` is installed, editable).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only (anyio's plugin ships with httpx)."""
    return "asyncio"
