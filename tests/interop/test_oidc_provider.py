"""The real mitmdump with the addon against a third-party authorization server.

panva's oidc-provider (OpenID Certified, from npm) issues the tokens; the backend accepts a
request only if the provider's introspection endpoint calls its bearer token active. Each auth
method the provider implements, discovery, and its error answers, end to end.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.interop.oidc_harness import BASIC_CLIENT_ID
from tests.interop.oidc_harness import BASIC_SECRET
from tests.interop.oidc_harness import EC_JWT_CLIENT_ID
from tests.interop.oidc_harness import JWT_SECRET
from tests.interop.oidc_harness import MTLS_CLIENT_ID
from tests.interop.oidc_harness import POST_CLIENT_ID
from tests.interop.oidc_harness import POST_SECRET
from tests.interop.oidc_harness import RSA_JWT_CLIENT_ID
from tests.interop.oidc_harness import SCOPE
from tests.interop.oidc_harness import SECRET_JWT_CLIENT_ID
from tests.interop.oidc_harness import SELF_SIGNED_CLIENT_ID
from tests.interop.oidc_harness import ApiBackend
from tests.interop.oidc_harness import InteropKeys
from tests.interop.oidc_harness import OidcProvider
from tests.support.devservers import TlsFiles
from tests.support.devservers import toml_backend
from tests.support.key_material import ClientCert
from tests.support.key_material import issue_client_cert
from tests.support.key_material import tls_client_auth
from tests.support.proxies import ProxyFactory


def config(
    provider: OidcProvider, backend: ApiBackend, *, discovery: bool = False, **fields: Any
) -> str:
    """One backend for `backend`'s host whose tokens come from `provider`."""
    where = {"issuer": provider.issuer} if discovery else {"token_url": provider.token_endpoint}
    return toml_backend(name="api", hosts=[backend.host], **where, scope=SCOPE, **fields)


def get(proxy: Any, url: str) -> httpx.Response:
    with proxy.client() as client:
        return client.get(url)


def assert_served(
    answer: httpx.Response,
    provider: OidcProvider,
    backend: ApiBackend,
    client_id: str,
    grants_before: dict[str, int],
) -> None:
    """The caller got the backend's 200 with a token the provider issued to `client_id`."""
    assert answer.status_code == 200, answer.text
    assert answer.json()["client_id"] == client_id
    (seen,) = backend.requests
    assert seen.status == 200
    assert seen.authorization is not None
    assert seen.authorization.startswith("Bearer ")
    facts = provider.introspect(seen.authorization.removeprefix("Bearer "))
    assert facts["active"] is True
    assert facts["client_id"] == client_id
    assert facts["aud"] == provider.resource
    assert facts["scope"] == SCOPE
    assert provider.grants().get(client_id, 0) == grants_before.get(client_id, 0) + 1


def served_through_the_proxy(
    provider: OidcProvider,
    backend: ApiBackend,
    mitmdump: ProxyFactory,
    *,
    discovery: bool = False,
    **fields: str,
) -> None:
    """One request through mitmdump configured with `fields` (and `discovery`, see `config`):
    served with a fresh, valid token."""
    before = provider.grants()
    proxy = mitmdump(config(provider, backend, discovery=discovery, **fields))
    answer = get(proxy, f"{backend.url}/things/1")
    assert_served(answer, provider, backend, fields["client_id"], before)


@pytest.mark.parametrize(
    ("method", "client_id", "secret"),
    [
        # Basic with a secret full of reserved characters: RFC 6749 §2.3.1 encoding at work.
        ("client_secret_basic", BASIC_CLIENT_ID, BASIC_SECRET),
        ("client_secret_post", POST_CLIENT_ID, POST_SECRET),
        ("client_secret_jwt", SECRET_JWT_CLIENT_ID, JWT_SECRET),
    ],
)
def test_shared_secret_methods(
    oidc_provider: OidcProvider,
    api_backend: ApiBackend,
    mitmdump: ProxyFactory,
    method: str,
    client_id: str,
    secret: str,
) -> None:
    served_through_the_proxy(
        oidc_provider,
        api_backend,
        mitmdump,
        client_id=client_id,
        client_secret=secret,
        auth_method=method,
    )


@pytest.mark.parametrize(
    ("key", "algorithm", "with_kid"),
    [("rsa", "RS256", True), ("rsa", "PS256", False), ("ec", "ES256", True)],
)
def test_private_key_jwt(
    oidc_provider: OidcProvider,
    api_backend: ApiBackend,
    mitmdump: ProxyFactory,
    interop_keys: InteropKeys,
    key: str,
    algorithm: str,
    with_kid: bool,
) -> None:
    """The assertion's `aud` is the token endpoint (the default)."""
    key_file = interop_keys.rsa if key == "rsa" else interop_keys.ec
    client_id = RSA_JWT_CLIENT_ID if key == "rsa" else EC_JWT_CLIENT_ID
    kid = {"key_id": key_file.kid} if with_kid else {}
    served_through_the_proxy(
        oidc_provider,
        api_backend,
        mitmdump,
        client_id=client_id,
        auth_method="private_key_jwt",
        private_key_file=str(key_file.path),
        signing_alg=algorithm,
        **kid,
    )


def test_workload_identity_assertion_from_a_file(
    oidc_provider: OidcProvider,
    api_backend: ApiBackend,
    mitmdump: ProxyFactory,
    interop_keys: InteropKeys,
    tmp_path: Path,
) -> None:
    """auth_method client_assertion: a JWT the platform wrote (here signed with the key the
    provider has registered for the client, as a workload identity federation would be) is the
    client's only proof, sent as it is."""
    now = int(time.time())
    claims = {"iss": EC_JWT_CLIENT_ID, "sub": EC_JWT_CLIENT_ID, "aud": oidc_provider.token_endpoint}
    claims |= {"iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    key = interop_keys.ec.path.read_bytes()
    path = tmp_path / "platform-token"
    path.write_text(
        jwt.encode(claims, key, algorithm="ES256", headers={"kid": interop_keys.ec.kid})
    )
    served_through_the_proxy(
        oidc_provider,
        api_backend,
        mitmdump,
        client_id=EC_JWT_CLIENT_ID,
        auth_method="client_assertion",
        client_assertion_file=str(path),
    )


def test_resource_indicator(
    oidc_provider: OidcProvider, api_backend: ApiBackend, mitmdump: ProxyFactory
) -> None:
    """RFC 8707 `resource` sent by the addon, accepted by the provider for its API."""
    served_through_the_proxy(
        oidc_provider,
        api_backend,
        mitmdump,
        client_id=POST_CLIENT_ID,
        client_secret=POST_SECRET,
        auth_method="client_secret_post",
        resource=oidc_provider.resource,
    )


def test_discovery_with_client_secret_basic(
    oidc_provider: OidcProvider, api_backend: ApiBackend, mitmdump: ProxyFactory
) -> None:
    """`issuer` instead of `token_url`. This provider serves only OpenID discovery, so the
    addon's RFC 8414 probe gets a 404 and the OpenID document is the one used."""
    served_through_the_proxy(
        oidc_provider,
        api_backend,
        mitmdump,
        discovery=True,
        client_id=BASIC_CLIENT_ID,
        client_secret=BASIC_SECRET,
    )


def test_discovery_with_private_key_jwt_for_the_issuer_audience(
    oidc_provider: OidcProvider,
    api_backend: ApiBackend,
    mitmdump: ProxyFactory,
    interop_keys: InteropKeys,
) -> None:
    served_through_the_proxy(
        oidc_provider,
        api_backend,
        mitmdump,
        discovery=True,
        client_id=RSA_JWT_CLIENT_ID,
        auth_method="private_key_jwt",
        private_key_file=str(interop_keys.rsa.path),
        key_id=interop_keys.rsa.kid,
        assertion_audience="issuer",
    )


@pytest.mark.parametrize(
    ("secret", "encoding", "oauth_error"),
    [
        ("not the secret", "form", "invalid_client"),
        # The provider form-decodes Basic credentials (RFC 6749 §2.3.1): sent raw, "%zz"
        # cannot be decoded at all.
        (BASIC_SECRET, "raw", "invalid_request"),
    ],
    ids=["wrong-secret", "raw-encoding"],
)
def test_refused_client_authentication_is_a_502_problem(
    oidc_provider: OidcProvider,
    api_backend: ApiBackend,
    mitmdump: ProxyFactory,
    secret: str,
    encoding: str,
    oauth_error: str,
) -> None:
    proxy = mitmdump(
        config(
            oidc_provider,
            api_backend,
            client_id=BASIC_CLIENT_ID,
            client_secret=secret,
            basic_encoding=encoding,
        )
    )
    answer = get(proxy, f"{api_backend.url}/things/1")
    assert answer.status_code == 502, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == 502
    assert problem["backend"] == "api"
    assert problem["oauth_error"] == oauth_error
    assert secret not in answer.text
    assert api_backend.requests == []


def test_one_token_per_backend_reused_across_requests(
    oidc_provider: OidcProvider, api_backend: ApiBackend, mitmdump: ProxyFactory
) -> None:
    """Two backends on one host by path prefix, each with its own client: one token each."""
    before = oidc_provider.grants()
    common = {"hosts": [api_backend.host], "token_url": oidc_provider.token_endpoint}
    proxy = mitmdump(
        toml_backend(
            name="alpha",
            path_prefix="/alpha/",
            **common,
            client_id=BASIC_CLIENT_ID,
            client_secret=BASIC_SECRET,
            scope=SCOPE,
        )
        + toml_backend(
            name="beta",
            path_prefix="/beta/",
            **common,
            client_id=POST_CLIENT_ID,
            client_secret=POST_SECRET,
            auth_method="client_secret_post",
            scope=SCOPE,
        )
    )
    with proxy.client() as client:
        answers = [
            client.get(f"{api_backend.url}/{prefix}/things/{i}")
            for i in range(3)
            for prefix in ("alpha", "beta")
        ]
    assert [a.status_code for a in answers] == [200] * 6, answers[-1].text
    assert [a.json()["client_id"] for a in answers] == [BASIC_CLIENT_ID, POST_CLIENT_ID] * 3
    tokens: dict[str, set[str | None]] = {"alpha": set(), "beta": set()}
    for seen in api_backend.requests:
        tokens[seen.path.split("/")[1]].add(seen.authorization)
    assert len(api_backend.requests) == 6
    assert all(len(values) == 1 for values in tokens.values()), tokens
    assert tokens["alpha"] != tokens["beta"]
    after = oidc_provider.grants()
    for client_id in (BASIC_CLIENT_ID, POST_CLIENT_ID):
        assert after.get(client_id, 0) == before.get(client_id, 0) + 1


@pytest.mark.parametrize("bound", [True, False], ids=["certificate_bound", "not-presented"])
def test_certificate_bound_token(
    mtls_provider: OidcProvider,
    mtls_backend: ApiBackend,
    mitmdump: ProxyFactory,
    tls_ca: TlsFiles,
    tmp_path: Path,
    bound: bool,
) -> None:
    """RFC 8705: tls_client_auth at the provider, which binds the token to the certificate
    (introspection's cnf x5t#S256); the backend serves it only on a connection presenting that
    certificate, which certificate_bound makes the proxy do."""
    cert = issue_client_cert(tls_ca, tmp_path, MTLS_CLIENT_ID)
    text = config(
        mtls_provider,
        mtls_backend,
        **tls_client_auth(tls_ca, cert, MTLS_CLIENT_ID),
        certificate_bound=bound,
    )
    proxy = mitmdump(text)
    answer = get(proxy, f"{mtls_backend.url}/things/1")
    seen = mtls_backend.requests
    bound_to = [
        request.introspection["cnf"]["x5t#S256"] for request in seen if request.introspection
    ]
    assert bound_to
    if bound:
        assert answer.status_code == 200, answer.text
        assert [request.thumbprint for request in seen] == bound_to  # the same certificate
    else:
        assert answer.status_code == 401
        assert all(request.thumbprint is None for request in seen)


def test_self_signed_certificate_bound_token(
    mtls_provider: OidcProvider,
    mtls_backend: ApiBackend,
    mitmdump: ProxyFactory,
    self_signed: ClientCert,
) -> None:
    """RFC 8705 §2.2: the provider knows the self-signed certificate from the client's JWKS."""
    text = config(
        mtls_provider,
        mtls_backend,
        client_id=SELF_SIGNED_CLIENT_ID,
        auth_method="self_signed_tls_client_auth",
        client_cert_file=str(self_signed.cert),
        client_key_file=str(self_signed.key),
        token_ca_bundle=str(mtls_provider.ca_bundle),
        certificate_bound=True,
    )
    answer = get(mitmdump(text), f"{mtls_backend.url}/things/1")
    assert answer.status_code == 200, answer.text
    (seen,) = mtls_backend.requests
    assert seen.introspection is not None
    assert seen.introspection["client_id"] == SELF_SIGNED_CLIENT_ID
    assert seen.thumbprint == seen.introspection["cnf"]["x5t#S256"]


def test_dpop_bound_token_with_the_servers_nonce(
    oidc_provider: OidcProvider, api_backend: ApiBackend, mitmdump: ProxyFactory
) -> None:
    """RFC 9449 at oidc-provider, which wants a nonce in every proof: the token is DPoP-bound
    (introspection's cnf.jkt), and the backend verifies each request's proof against it."""
    text = config(
        oidc_provider,
        api_backend,
        client_id=POST_CLIENT_ID,
        client_secret=POST_SECRET,
        auth_method="client_secret_post",
        dpop=True,
    )
    proxy = mitmdump(text)
    with proxy.client() as client:
        answers = [client.get(f"{api_backend.url}/things/{n}?page={n}") for n in range(2)]
    assert [answer.status_code for answer in answers] == [200, 200], answers[0].text
    for seen in api_backend.requests:
        assert seen.authorization is not None
        assert seen.authorization.startswith("DPoP ")
        assert seen.introspection is not None
        assert "jkt" in seen.introspection["cnf"]
