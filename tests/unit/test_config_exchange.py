"""Config keys of token exchange (RFC 8693): `grant = "token_exchange"`, where the caller's token
comes from, the token types (short names or URIs), the actor token for delegation and the bound
on callers; every bad value or combination refused, naming the file, the backend and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitm_oauth2.model.credentials import ACCESS_TOKEN_TYPE
from mitm_oauth2.model.credentials import Exchange
from mitm_oauth2.model.credentials import GrantType
from mitm_oauth2.tokens.subjects import DEFAULT_MAX_EXCHANGED_TOKENS
from tests.support.config_helpers import backend
from tests.support.config_helpers import load
from tests.support.config_helpers import refused

JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def exchange(**overrides: object) -> str:
    return backend(grant="token_exchange", **overrides)


def test_defaults_take_the_callers_bearer_token_as_an_access_token(tmp_path: Path) -> None:
    (config,) = load(tmp_path, exchange(audience="orders-api")).backends
    credentials = config.grant.credentials
    assert credentials.grant is GrantType.TOKEN_EXCHANGE
    assert credentials.exchange == Exchange(subject_token_type=ACCESS_TOKEN_TYPE)
    assert credentials.audience == "orders-api"
    assert config.grant.subject is None  # each caller's grant gets its own
    assert config.subject_header == "Authorization"
    assert config.max_exchanged_tokens == DEFAULT_MAX_EXCHANGED_TOKENS


def test_token_types_by_short_name_or_uri_and_another_header(tmp_path: Path) -> None:
    (tmp_path / "actor.jwt").write_text("actor.token.here\n", encoding="utf-8")
    text = exchange(
        subject_token_header="X-Subject-Token",
        subject_token_type="jwt",
        requested_token_type="urn:example:custom-type",
        actor_token_file="actor.jwt",
        actor_token_type="access_token",
        max_exchanged_tokens=500,
    )
    (config,) = load(tmp_path, text).backends
    settings = config.grant.credentials.exchange
    assert settings == Exchange(
        subject_token_type=JWT_TYPE,
        requested_token_type="urn:example:custom-type",
        actor_token_file=str(tmp_path / "actor.jwt"),
        actor_token_type=ACCESS_TOKEN_TYPE,
    )
    assert config.subject_header == "X-Subject-Token"
    assert config.max_exchanged_tokens == 500


@pytest.mark.parametrize(
    ("overrides", "key", "says"),
    [
        ({"subject_token_type": "bearer"}, "subject_token_type", "neither a token type URI"),
        ({"requested_token_type": "idtoken"}, "requested_token_type", "neither a token type"),
        ({"actor_token_type": "jwt"}, "actor_token_file", "together"),
        ({"actor_token_file": "actor.jwt"}, "actor_token_type", "together"),
        ({"actor_token_file": "missing.jwt", "actor_token_type": "jwt"}, "actor_token_file", ""),
        ({"subject_token_header": "Host"}, "subject_token_header", "not a request header"),
        ({"subject_token_header": "a b"}, "subject_token_header", "not a request header"),
        ({"max_exchanged_tokens": 0}, "max_exchanged_tokens", "between 1 and"),
        ({"max_exchanged_tokens": 2.5}, "max_exchanged_tokens", "whole number"),
        ({"max_exchanged_tokens": True}, "max_exchanged_tokens", "whole number"),
        ({"dpop": True}, "dpop", "not bound to a key"),
    ],
)
def test_bad_exchange_settings_are_refused(
    tmp_path: Path, overrides: dict[str, object], key: str, says: str
) -> None:
    (tmp_path / "actor.jwt").write_text("actor.token.here\n", encoding="utf-8")
    message = refused(tmp_path, exchange(**overrides))
    assert f"backend 'api': key '{key}'" in message
    assert says in message


@pytest.mark.parametrize(
    "key",
    ["subject_token_header", "subject_token_type", "requested_token_type", "max_exchanged_tokens"],
)
def test_exchange_keys_mean_nothing_for_other_grants(tmp_path: Path, key: str) -> None:
    value: object = 10 if key == "max_exchanged_tokens" else "jwt"
    message = refused(tmp_path, backend(**{key: value}))
    assert f"key '{key}': only for grant = \"token_exchange\"" in message
