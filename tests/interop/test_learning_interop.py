"""Learning a backend (RFC 9728) whose authorization server is the third-party oidc-provider:
a resource server on HTTPS names its protected resource metadata in its 401, that metadata
names oidc-provider, and the table `oauth.suggest` prints works unchanged once pasted, with the
client's id and secret in the environment variables it names."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator

import pytest

from tests.interop.oidc_harness import API_CLIENT_ID
from tests.interop.oidc_harness import API_SECRET
from tests.interop.oidc_harness import SCOPE
from tests.interop.oidc_harness import ApiBackend
from tests.interop.oidc_harness import OidcProvider
from tests.support.devservers import TlsFiles
from tests.support.devservers import toml_backend
from tests.support.proxies import COMMAND_PROBE
from tests.support.proxies import ProxyFactory


@pytest.fixture
def described_backend(mtls_provider: OidcProvider, tls_ca: TlsFiles) -> Iterator[ApiBackend]:
    backend = ApiBackend(mtls_provider, tls=tls_ca, metadata=True)
    yield backend
    backend.close()


def test_the_suggested_table_for_an_oidc_provider_backend_works_unchanged(
    mtls_provider: OidcProvider,
    described_backend: ApiBackend,
    mitmdump: ProxyFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The proxy serves another backend; the described one is not configured.
    elsewhere = toml_backend(
        name="elsewhere",
        hosts=["elsewhere.test"],
        token_url=f"{mtls_provider.issuer}/token",
        client_id=API_CLIENT_ID,
        client_secret=API_SECRET,
    )
    before = mtls_provider.grants()
    learning = mitmdump(elsewhere, "-s", str(COMMAND_PROBE))
    with learning.client() as client:
        assert client.get(f"{described_backend.url}/things/1").status_code == 401
        learning.wait_for_output(r"wants tokens of .* \(RFC 9728 metadata\)")
        table = client.get("http://commands.probe.invalid/oauth.suggest").text
    (suggested,) = tomllib.loads(table)["backend"]
    assert suggested["issuer"] == mtls_provider.issuer
    assert suggested["resource"] == described_backend.url
    assert suggested["scope"] == SCOPE
    assert mtls_provider.grants() == before  # no token asked for while it was only learned

    monkeypatch.setenv(suggested["client_id_env"], API_CLIENT_ID)
    monkeypatch.setenv(suggested["client_secret_env"], API_SECRET)
    pasted = mitmdump(table)
    with pasted.client() as client:
        answer = client.get(f"{described_backend.url}/things/2")
    assert answer.status_code == 200, answer.text
    last = described_backend.requests[-1]
    assert last.introspection is not None
    assert last.introspection["aud"] == described_backend.url  # the token is for this resource
    assert last.introspection["client_id"] == API_CLIENT_ID
