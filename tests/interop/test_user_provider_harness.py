"""The harness of the user grants' interoperability tests, on its own: oidc-provider with end
users (tests/interop/oidc_users.py) behaves as the addon's tests take it to.

A refresh rotates the refresh token and a rotated one presented again revokes the grant (its
newest refresh token stops working too); the password grant (RFC 6749 §4.3, registered in
oidc_users_server.mjs) issues tokens that oidc-provider's own refresh_token grant refreshes, the
same way; access tokens live the --access-ttl. Plain httpx on 127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import httpx
import pytest

from tests.interop.oidc_users import ALICE
from tests.interop.oidc_users import ALICE_PASSWORD
from tests.interop.oidc_users import CLIENT_ID
from tests.interop.oidc_users import CLIENT_SECRET
from tests.interop.oidc_users import PUBLIC_CLIENT_ID
from tests.interop.oidc_users import SignInError
from tests.interop.oidc_users import UserProvider
from tests.interop.oidc_users import sign_in
from tests.support.procs import until

TIMEOUT = 10


def token_request(
    provider: UserProvider,
    data: dict[str, str],
    client_id: str = CLIENT_ID,
    client_secret: str | None = CLIENT_SECRET,
) -> httpx.Response:
    """A token request as a client sends it: client_secret_basic, or client_id in the body."""
    with httpx.Client(trust_env=False, timeout=TIMEOUT) as client:
        if client_secret is None:
            return client.post(provider.token_endpoint, data=data | {"client_id": client_id})
        auth = (client_id, client_secret)
        return client.post(provider.token_endpoint, data=data, auth=auth)


def refresh(
    provider: UserProvider,
    refresh_token: str,
    client_id: str = CLIENT_ID,
    client_secret: str | None = CLIENT_SECRET,
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(provider, data, client_id, client_secret)


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant", response.text


def test_refresh_rotates_and_reuse_revokes_the_grant(user_provider: UserProvider) -> None:
    signed_in = sign_in(user_provider, ALICE, ALICE_PASSWORD)
    rt1 = signed_in["refresh_token"]
    assert set(signed_in["scope"].split()) == {"openid", "offline_access", "api:read"}

    first = refresh(user_provider, rt1)
    assert first.status_code == 200, first.text
    rt2 = first.json()["refresh_token"]
    assert rt2 != rt1
    introspection = user_provider.introspect(first.json()["access_token"])
    assert introspection["active"] is True, introspection
    assert introspection["sub"] == ALICE
    assert introspection["client_id"] == CLIENT_ID
    assert "api:read" in introspection["scope"].split()

    reused = refresh(user_provider, rt1)
    assert_invalid_grant(reused)
    assert_invalid_grant(refresh(user_provider, rt2))  # the whole grant is gone
    assert user_provider.introspect(rt2) == {"active": False}
    counts = user_provider.counts()
    assert counts["revoked"] == 1, counts
    assert counts["authorization_code"] == 1, counts
    assert counts["refresh_token"] == 1, counts
    revoked = user_provider.events("grant.revoked", at_least=1)
    assert len(revoked) == 1, revoked
    assert revoked[0]["grant_id"], revoked
    details = [e["error_detail"] for e in user_provider.events("grant.error", at_least=2)]
    assert details == ["refresh token already used", "refresh token not found"]


def test_password_grant_refreshes_and_rotates(user_provider: UserProvider) -> None:
    data = {"grant_type": "password", "username": ALICE, "password": ALICE_PASSWORD}
    granted = token_request(user_provider, data | {"scope": "offline_access api:read"})
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "offline_access api:read"
    introspection = user_provider.introspect(body["access_token"])
    assert introspection["active"] is True, introspection
    assert introspection["sub"] == ALICE

    rt = body["refresh_token"]
    seen = {rt}
    for _ in range(3):
        refreshed = refresh(user_provider, rt)
        assert refreshed.status_code == 200, refreshed.text
        rt = refreshed.json()["refresh_token"]
        assert rt not in seen
        seen.add(rt)
        assert user_provider.introspect(refreshed.json()["access_token"])["active"] is True
    assert refreshed.json()["scope"] == "offline_access api:read"

    # A rotated password-grant refresh token presented again revokes that grant too.
    assert_invalid_grant(refresh(user_provider, body["refresh_token"]))
    assert_invalid_grant(refresh(user_provider, rt))

    wrong = token_request(user_provider, data | {"password": "not-alice-password"})
    assert_invalid_grant(wrong)
    errors = user_provider.events("grant.error", at_least=3)
    assert errors[-1]["error_detail"] == "wrong username or password"
    counts = user_provider.counts()
    assert counts == {"password": 1, "refresh_token": 3, "revoked": 1}, counts


def test_public_client_signs_in_and_refreshes(user_provider: UserProvider) -> None:
    signed_in = sign_in(user_provider, ALICE, ALICE_PASSWORD, PUBLIC_CLIENT_ID, None)
    refreshed = refresh(
        user_provider, signed_in["refresh_token"], client_id=PUBLIC_CLIENT_ID, client_secret=None
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != signed_in["refresh_token"]
    assert user_provider.introspect(refreshed.json()["access_token"])["client_id"] == (
        PUBLIC_CLIENT_ID
    )


def test_sign_in_without_prompt_consent(user_provider: UserProvider) -> None:
    """No consent page (first-party consent), and still a refresh token without offline_access."""
    signed_in = sign_in(user_provider, ALICE, ALICE_PASSWORD, prompt=None)
    assert set(signed_in["scope"].split()) == {"openid", "api:read"}
    refreshed = refresh(user_provider, signed_in["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != signed_in["refresh_token"]


def test_sign_in_checks_the_password(user_provider: UserProvider) -> None:
    with pytest.raises(SignInError, match="403"):
        sign_in(user_provider, ALICE, "not-alice-password")
    assert user_provider.counts() == {"revoked": 0}


def test_access_tokens_live_the_access_ttl(user_provider: UserProvider) -> None:
    signed_in = sign_in(user_provider, ALICE, ALICE_PASSWORD)
    assert signed_in["expires_in"] == user_provider.access_ttl == 2
    refreshed = refresh(user_provider, signed_in["refresh_token"])
    assert refreshed.json()["expires_in"] == 2
    data = {"grant_type": "password", "username": ALICE, "password": ALICE_PASSWORD}
    assert token_request(user_provider, data).json()["expires_in"] == 2

    access_token = refreshed.json()["access_token"]
    introspection = user_provider.introspect(access_token)
    assert introspection["exp"] - introspection["iat"] == 2, introspection
    until(
        lambda: user_provider.introspect(access_token) == {"active": False},
        "the access token expires",
        timeout=TIMEOUT,
        step=0.2,
    )
    # The refresh token outlives it.
    assert refresh(user_provider, refreshed.json()["refresh_token"]).status_code == 200
