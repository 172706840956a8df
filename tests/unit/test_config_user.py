"""Config keys of the grants that act as a user: `grant = "refresh_token"` with the user's
refresh token in a file or an environment variable, `grant = "password"` with `username` and the
password in either; a public client (`auth_method = "none"`); every bad value or combination
refused, naming the file, the backend and the key, never the token or password."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import GrantType
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import UserGrant
from tests.support.config_helpers import ENV
from tests.support.config_helpers import backend
from tests.support.config_helpers import load
from tests.support.config_helpers import refused

REFRESH = "rt-of-alice-0123"
PASSWORD = "alice's p@ss"
USER_ENV = {**ENV, "ALICE_REFRESH": REFRESH, "ALICE_PASSWORD": PASSWORD}


def test_a_refresh_token_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "alice.rt").write_text(REFRESH + "\n", encoding="utf-8")
    text = backend(grant="refresh_token", refresh_token_file="alice.rt", scope="mail.read")
    (config,) = load(tmp_path, text).backends
    credentials = config.grant.credentials
    assert credentials.grant is GrantType.REFRESH_TOKEN
    assert credentials.user == UserGrant(refresh_token=Secret(REFRESH))
    assert credentials.scopes == ("mail.read",)
    assert REFRESH not in repr(config)


def test_a_refresh_token_from_the_environment_for_a_public_client(tmp_path: Path) -> None:
    text = backend(
        grant="refresh_token",
        refresh_token_env="ALICE_REFRESH",
        auth_method="none",
        client_secret=None,
    )
    (config,) = load(tmp_path, text, USER_ENV).backends
    credentials = config.grant.credentials
    assert credentials.auth_method is AuthMethod.NONE
    assert credentials.user is not None
    assert credentials.user.refresh_token == Secret(REFRESH)


def test_the_password_grant(tmp_path: Path) -> None:
    text = backend(grant="password", username="alice", password_env="ALICE_PASSWORD")
    (config,) = load(tmp_path, text, USER_ENV).backends
    credentials = config.grant.credentials
    assert credentials.grant is GrantType.PASSWORD
    assert credentials.user == UserGrant(username="alice", password=Secret(PASSWORD))
    assert PASSWORD not in repr(config)


@pytest.mark.parametrize(
    ("overrides", "key", "says"),
    [
        ({"grant": "refresh_token"}, "refresh_token_env", "give exactly one of"),
        (
            {"grant": "refresh_token", "refresh_token_env": "ALICE_REFRESH"}
            | {"refresh_token_file": "alice.rt"},
            "refresh_token_file",
            "give exactly one of",
        ),
        (
            {"grant": "refresh_token", "refresh_token_env": "NOBODY_SET_THIS"},
            "refresh_token_env",
            "NOBODY_SET_THIS is not set",
        ),
        (
            {"grant": "refresh_token", "refresh_token_file": "missing.rt"},
            "refresh_token_file",
            "missing.rt",
        ),
        (
            {"grant": "refresh_token", "refresh_token_file": "empty.rt"},
            "refresh_token_file",
            "empty",
        ),
        ({"grant": "password", "password_env": "ALICE_PASSWORD"}, "username", "missing"),
        ({"grant": "password", "username": "alice"}, "password_env", "give exactly one of"),
        (
            {"grant": "password", "username": " ", "password_env": "ALICE_PASSWORD"},
            "username",
            "not be empty",
        ),
        (
            {"refresh_token_env": "ALICE_REFRESH"},
            "refresh_token_env",
            'only for grant = "refresh_token"',
        ),
        ({"username": "alice"}, "username", 'only for grant = "password"'),
        (
            {"grant": "refresh_token", "refresh_token_env": "ALICE_REFRESH", "username": "alice"},
            "username",
            'only for grant = "password"',
        ),
        ({"auth_method": "none", "client_secret": None}, "auth_method", "public client"),
        (
            {"grant": "refresh_token", "refresh_token_env": "ALICE_REFRESH", "dpop": True},
            "dpop",
            "give dpop_key_file",
        ),
        (
            {"grant": "password", "username": "alice", "password_env": "ALICE_PASSWORD"}
            | {"auth_method": "none", "client_secret": None, "client_id": None},
            "client_id",
            "missing",
        ),
    ],
)
def test_bad_user_settings_are_refused(
    tmp_path: Path, overrides: dict[str, object], key: str, says: str
) -> None:
    (tmp_path / "alice.rt").write_text(REFRESH, encoding="utf-8")
    (tmp_path / "empty.rt").write_text("\n", encoding="utf-8")
    message = refused(tmp_path, backend(**overrides), USER_ENV)
    assert f"backend 'api': key '{key}'" in message
    assert says in message
    assert REFRESH not in message
    assert PASSWORD not in message
