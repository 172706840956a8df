"""Shared fixtures for the unit tests: the anyio backend and a ready-made grant."""

from __future__ import annotations

import pytest

from mitm_oauth2.credentials import AuthMethod
from mitm_oauth2.credentials import ClientCredentials
from mitm_oauth2.credentials import Secret
from mitm_oauth2.credentials import TokenGrant

# RFC 6749 §2.3.1 test secret: every character the seed recipe's raw base64 gets wrong.
SECRET = "p@ss:w+rd/%=é"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _make_grant(
    *,
    backend: str = "api",
    token_url: str = "https://idp.test/oauth/token",
    client_id: str = "my client",
    secret: str = SECRET,
    scopes: tuple[str, ...] = ("read", "write"),
    auth_method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC,
    max_token_age: float = 3600.0,
) -> TokenGrant:
    credentials = ClientCredentials(
        token_url=token_url,
        client_id=client_id,
        client_secret=Secret(secret),
        scopes=scopes,
        auth_method=auth_method,
    )
    return TokenGrant(backend, credentials, max_token_age)


@pytest.fixture
def make_grant():
    """Factory for a TokenGrant; keyword arguments override one field each."""
    return _make_grant
