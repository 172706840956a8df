"""Token exchange (RFC 8693) against panva's oidc-provider, through the real mitmdump: the
provider has no exchange of its own, so oidc_server.mjs registers the grant, taking only access
tokens it finds in its own store. Each caller's token is exchanged once for a token of the
proxy's client; the backend, which asks the provider about every token, sees only those."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.interop.oidc_harness import BASIC_CLIENT_ID
from tests.interop.oidc_harness import BASIC_SECRET
from tests.interop.oidc_harness import POST_CLIENT_ID
from tests.interop.oidc_harness import POST_SECRET
from tests.interop.oidc_harness import RSA_JWT_CLIENT_ID
from tests.interop.oidc_harness import SCOPE
from tests.interop.oidc_harness import ApiBackend
from tests.interop.oidc_harness import InteropKeys
from tests.interop.oidc_harness import OidcProvider
from tests.support.devservers import toml_backend
from tests.support.proxies import ProxyFactory


def caller_token(provider: OidcProvider) -> str:
    """A token the provider issues to another client (the caller's own, got without us)."""
    form = {"grant_type": "client_credentials", "scope": SCOPE}
    form |= {"client_id": POST_CLIENT_ID, "client_secret": POST_SECRET}
    response = provider.http.post(provider.token_endpoint, data=form)
    response.raise_for_status()
    return str(response.json()["access_token"])


def exchanging(provider: OidcProvider, backend: ApiBackend, **auth: Any) -> str:
    return toml_backend(
        name="api",
        hosts=[backend.host],
        token_url=provider.token_endpoint,
        grant="token_exchange",
        scope=SCOPE,
        resource=provider.resource,
        **auth,
    )


@pytest.mark.parametrize("method", ["client_secret_basic", "private_key_jwt"])
def test_each_caller_is_exchanged_once_and_the_backend_sees_only_exchanged_tokens(
    oidc_provider: OidcProvider,
    api_backend: ApiBackend,
    mitmdump: ProxyFactory,
    interop_keys: InteropKeys,
    method: str,
) -> None:
    if method == "client_secret_basic":
        client_id = BASIC_CLIENT_ID
        auth: dict[str, Any] = {"client_id": client_id, "client_secret": BASIC_SECRET}
    else:
        client_id = RSA_JWT_CLIENT_ID
        auth = {"client_id": client_id, "auth_method": method}
        auth |= {"private_key_file": str(interop_keys.rsa.path), "key_id": interop_keys.rsa.kid}
    callers = [caller_token(oidc_provider) for _ in range(2)]
    before = oidc_provider.grants().get(client_id, 0)
    proxy = mitmdump(exchanging(oidc_provider, api_backend, **auth))
    with proxy.client() as client:
        for _ in range(3):
            for caller in callers:
                headers = {"Authorization": f"Bearer {caller}"}
                answer = client.get(f"{api_backend.url}/things/1", headers=headers)
                assert answer.status_code == 200, answer.text
                assert answer.json()["client_id"] == client_id  # not the caller's client
    assert oidc_provider.grants()[client_id] == before + 2  # one exchange per caller
    seen = {request.authorization for request in api_backend.requests}
    assert len(seen) == 2
    assert not {f"Bearer {caller}" for caller in callers} & seen
    for authorization in seen:
        assert authorization is not None
        facts = oidc_provider.introspect(authorization.removeprefix("Bearer "))
        assert facts["active"] is True
        assert facts["aud"] == oidc_provider.resource
        assert facts["act"] == {"sub": POST_CLIENT_ID}  # on behalf of the caller's client


def test_a_token_the_provider_never_issued_is_refused_and_not_forwarded(
    oidc_provider: OidcProvider, api_backend: ApiBackend, mitmdump: ProxyFactory
) -> None:
    auth = {"client_id": BASIC_CLIENT_ID, "client_secret": BASIC_SECRET}
    proxy = mitmdump(exchanging(oidc_provider, api_backend, **auth))
    with proxy.client() as client:
        headers = {"Authorization": "Bearer made-up-token-0123456789"}
        answer: httpx.Response = client.get(f"{api_backend.url}/things/1", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["oauth_error"] == "invalid_grant"
    assert api_backend.requests == []
    assert "made-up-token-0123456789" not in proxy.output()
