"""Config parsing: a good file becomes typed settings, a bad one a message naming what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mitm_oauth2.config.hosts import HostPattern
from mitm_oauth2.config.watch import read_config
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.errors import ConfigError
from tests.support.config_helpers import SECRET
from tests.support.config_helpers import backend
from tests.support.config_helpers import load
from tests.support.config_helpers import refused


def test_full_example(tmp_path: Path) -> None:
    text = backend(hosts=["api.test", "API.test:8443", "*.svc.test", "[::1]:9000"]) + backend(
        name="billing",
        hosts=["billing.test"],
        token_url="http://127.0.0.1:8081/token",
        client_id="billing client",
        client_secret=None,
        client_secret_env="API_SECRET",
        scope="read write read",
        auth_method="client_secret_post",
        max_token_age=90,
    )
    config = load(tmp_path, text)
    assert config.path == str(tmp_path / "backends.toml")
    api, billing = config.backends
    assert api.name == "api"
    assert api.hosts == (
        HostPattern("api.test"),
        HostPattern("api.test", 8443),
        HostPattern("svc.test", wildcard=True),
        HostPattern("::1", 9000),
    )
    creds = api.grant.credentials
    assert (creds.token_url, creds.client_id) == ("https://idp.test/oauth/token", "my-client")
    assert creds.client_secret.reveal() == SECRET
    assert creds.scopes == ()
    assert creds.auth_method is AuthMethod.CLIENT_SECRET_BASIC
    assert api.grant.max_token_age == 3600.0
    assert api.grant.backend == "api"
    creds = billing.grant.credentials
    assert creds.client_secret.reveal() == SECRET
    assert creds.scopes == ("read", "write")
    assert creds.auth_method is AuthMethod.CLIENT_SECRET_POST
    assert billing.grant.max_token_age == 90.0
    assert SECRET not in repr(config)


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    message = refused(tmp_path, '[[backend]]\nname = "api"\nhosts = [\n"a" "b"]\n')
    assert "invalid TOML" in message
    assert "line 4" in message
    assert "column" in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read"):
        _ = read_config(tmp_path / "missing.toml", environ={}).config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timeout = 3\n" + backend(), "unknown top-level key 'timeout'"),
        ("", "no [[backend]] tables"),
        ("[backend]\nname = 'api'\n", "write each backend as [[backend]]"),
    ],
)
def test_document_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


ERRORS = [
    # (id, toml text, backend label in the message, key in the message, words in the message)
    ("missing name", backend(name=None), "backend #1", "name", "missing"),
    ("second name missing", backend() + backend(name=None), "backend #2", "name", "missing"),
    ("name not a string", backend(name=5), "backend #1", "name", "string"),
    ("empty name", backend(name=""), "backend #1", "name", "empty"),
    ("bad name", backend(name="my api"), "backend #1", "name", "letters"),
    ("missing hosts", backend(hosts=None), "backend 'api'", "hosts", "missing"),
    ("missing token_url", backend(token_url=None), "backend 'api'", "token_url", "missing"),
    ("missing client_id", backend(client_id=None), "backend 'api'", "client_id", "missing"),
    ("typo", backend(client_secert="x"), "backend 'api'", "client_secert", "unknown key"),
    ("hosts string", backend(hosts="api.test"), "backend 'api'", "hosts", "list"),
    ("hosts empty", backend(hosts=[]), "backend 'api'", "hosts", "non-empty"),
    ("hosts int entry", backend(hosts=[443]), "backend 'api'", "hosts", "strings"),
    ("age string", backend(max_token_age="3600"), "backend 'api'", "max_token_age", "string"),
    ("age bool", backend(max_token_age=True), "backend 'api'", "max_token_age", "boolean"),
    ("scope list of lists", backend(scope=[["a"]]), "backend 'api'", "scope", "list of strings"),
    ("client_id int", backend(client_id=7), "backend 'api'", "client_id", "integer"),
    ("empty client_id", backend(client_id=""), "backend 'api'", "client_id", "empty"),
    ("blank token_url", backend(token_url="  "), "backend 'api'", "token_url", "empty"),
    ("empty scope", backend(scope=""), "backend 'api'", "scope", "empty"),
    ("dup name", backend() + backend(hosts=["b.test"]), "backend 'api'", "name", "twice"),
    ("dup host in list", backend(hosts=["a.test", "A.test."]), "backend 'api'", "hosts", "twice"),
    ("bad auth_method", backend(auth_method="basic"), "backend 'api'", "auth_method", "not one of"),
    ("bad scope char", backend(scope="read lesen-ä"), "backend 'api'", "scope", "RFC 6749"),
    ("scope backslash", backend(scope="a\\b"), "backend 'api'", "scope", "scope token"),
    ("age zero", backend(max_token_age=0), "backend 'api'", "max_token_age", "between"),
    ("age negative", backend(max_token_age=-60), "backend 'api'", "max_token_age", "between"),
    ("age huge", backend(max_token_age=10**12), "backend 'api'", "max_token_age", "between"),
    ("age inf", backend(max_token_age=float("inf")), "backend 'api'", "max_token_age", "between"),
    ("age nan", backend(max_token_age=float("nan")), "backend 'api'", "max_token_age", "between"),
]


@pytest.mark.parametrize(
    ("text", "label", "key", "words"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_backend_errors(tmp_path: Path, text: str, label: str, key: str, words: str) -> None:
    message = refused(tmp_path, text)
    assert f"{label}: key '{key}'" in message
    assert words in message


@pytest.mark.parametrize("age", [1, 60.5, 366 * 24 * 3600])
def test_max_token_age_accepted(tmp_path: Path, age: float) -> None:
    (api,) = load(tmp_path, backend(max_token_age=age)).backends
    assert api.grant.max_token_age == float(age)


def test_lifecycle_keys_default_and_override(tmp_path: Path) -> None:
    (api,) = load(tmp_path, backend()).backends
    assert (api.grant.refresh_margin, api.retry_on_401) == (30.0, True)
    (api,) = load(tmp_path, backend(refresh_margin=120, retry_on_401=False)).backends
    assert (api.grant.refresh_margin, api.retry_on_401) == (120.0, False)


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        ({"refresh_margin": -1}, "refresh_margin", "between 0"),
        ({"refresh_margin": "30s"}, "refresh_margin", "number of seconds"),
        ({"retry_on_401": "yes"}, "retry_on_401", "true or false"),
        ({"retry_on_401": 1}, "retry_on_401", "true or false"),
    ],
)
def test_lifecycle_key_errors(
    tmp_path: Path, overrides: dict[str, Any], key: str, words: str
) -> None:
    message = refused(tmp_path, backend(**overrides))
    assert f"backend 'api': key '{key}'" in message
    assert words in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (backend(client_secert="x"), "unknown key (did you mean 'client_secret'?)"),
        (backend(tokenurl="x"), "unknown key (did you mean 'token_url'?)"),
        (backend(colour="x"), "unknown key (remove it; docs/configuration.md lists every key)"),
        (
            "[[backends]]\n" + backend().split("\n", 1)[1],
            "key 'backends' (did you mean 'backend'?)",
        ),
    ],
)
def test_unknown_keys_get_the_nearest_known_one(tmp_path: Path, text: str, words: str) -> None:
    assert words in refused(tmp_path, text)
