"""Phantom tokens against panva's oidc-provider, through the real mitmdump: authlib's
client-credentials session, holding a client id and secret the provider has never heard of, asks
the provider's own token endpoint for a token. The proxy answers with a phantom token and asks
the provider once with its real client; the backend, which asks the provider about every token,
gets that real token and accepts it; the provider never hears of the dummy client."""

from __future__ import annotations

from authlib.integrations.httpx_client import OAuth2Client

from tests.interop.oidc_harness import BASIC_CLIENT_ID
from tests.interop.oidc_harness import BASIC_SECRET
from tests.interop.oidc_harness import SCOPE
from tests.interop.oidc_harness import ApiBackend
from tests.interop.oidc_harness import OidcProvider
from tests.support.devservers import toml_backend
from tests.support.proxies import ProxyFactory


def test_an_sdk_with_dummy_credentials_calls_the_api_with_the_real_token(
    oidc_provider: OidcProvider, api_backend: ApiBackend, mitmdump: ProxyFactory
) -> None:
    config = toml_backend(
        name="api",
        hosts=[api_backend.host],
        token_url=oidc_provider.token_endpoint,
        client_id=BASIC_CLIENT_ID,
        client_secret=BASIC_SECRET,
        scope=SCOPE,
        phantom=True,
    )
    before = oidc_provider.grants().get(BASIC_CLIENT_ID, 0)
    errors = oidc_provider.output().count('"grant.error"')  # it serves other tests too
    proxy = mitmdump(config)
    with OAuth2Client(
        "dummy-client", "dummy-secret", scope=SCOPE, proxy=proxy.url, trust_env=False
    ) as sdk:
        token = sdk.fetch_token(oidc_provider.token_endpoint, grant_type="client_credentials")
        answers = [sdk.get(f"{api_backend.url}/things/{n}") for n in range(3)]
    assert token["access_token"].startswith("phantom.")
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert {answer.json()["client_id"] for answer in answers} == {BASIC_CLIENT_ID}
    assert oidc_provider.grants()[BASIC_CLIENT_ID] == before + 1
    # The SDK's token request never got there: the provider would have refused the client.
    assert oidc_provider.output().count('"grant.error"') == errors
    assert "dummy-client" not in oidc_provider.output()
    seen = {request.authorization for request in api_backend.requests}
    assert len(seen) == 1
    assert f"Bearer {token['access_token']}" not in seen
