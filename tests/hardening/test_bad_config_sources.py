"""Bad configuration files, part 2: empty or whitespace secrets, unset environment variables,
unreadable files, URLs that are not absolute or not URLs, TOML syntax errors (with line and
column). Checked as in part 1 (config_cases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hardening.config_cases import API
from tests.hardening.config_cases import TOP
from tests.hardening.config_cases import Write
from tests.hardening.config_cases import assert_refused
from tests.hardening.config_cases import raw_file
from tests.hardening.config_cases import toml
from tests.support.config_helpers import backend

BAD_INPUTS = [
    # Empty or whitespace secrets.
    pytest.param(
        toml(backend(client_secret="")),
        API,
        "client_secret",
        "must not be empty",
        id="secret-empty",
    ),
    pytest.param(
        toml(backend(client_secret=" \t ")),
        API,
        "client_secret",
        "must not be empty",
        id="secret-whitespace",
    ),
    pytest.param(
        toml(backend(client_secret=None, client_secret_env="BLANK")),
        API,
        "client_secret_env",
        "the secret is empty",
        id="secret-env-whitespace",
    ),
    pytest.param(
        toml(backend(client_secret=None, client_secret_file="s"), {"s": b"\n"}),
        API,
        "client_secret_file",
        "the secret is empty",
        id="secret-file-newline",
    ),
    pytest.param(
        toml(backend(client_secret_env="API_SECRET")),
        API,
        "client_secret_env",
        "give exactly one of",
        id="two-secrets",
    ),
    # Environment variable unset, unreadable files.
    pytest.param(
        toml(backend(client_secret=None, client_secret_env="NOT_SET")),
        API,
        "client_secret_env",
        "environment variable NOT_SET is not set",
        id="env-unset",
    ),
    pytest.param(
        toml(backend(client_secret=None, client_secret_file="gone")),
        API,
        "client_secret_file",
        "No such file or directory",
        id="secret-file-missing",
    ),
    pytest.param(
        toml(backend(client_secret=None, client_secret_file=".")),
        API,
        "client_secret_file",
        "cannot read",
        id="secret-file-is-a-folder",
    ),
    pytest.param(
        toml(backend(client_secret=None, client_secret_file="s"), {"s": b"\xff\xfe"}),
        API,
        "client_secret_file",
        "UnicodeDecodeError",
        id="secret-file-not-utf8",
    ),
    pytest.param(
        raw_file(None),
        TOP,
        None,
        "cannot read the configuration file (No such file",
        id="config-missing",
    ),
    pytest.param(
        raw_file(b"/"),
        TOP,
        None,
        "cannot read the configuration file (Is a directory",
        id="config-is-a-folder",
    ),
    pytest.param(
        raw_file(b"\xff" + backend().encode()),
        TOP,
        None,
        "cannot read the configuration file (UnicodeDecodeError)",
        id="config-not-utf8",
    ),
    # Non-absolute or unusable URLs.
    pytest.param(
        toml(backend(token_url="/oauth/token")),
        API,
        "token_url",
        "must be an absolute http(s) URL",
        id="token-url-relative",
    ),
    pytest.param(
        toml(backend(token_url="idp.test/token")),
        API,
        "token_url",
        "must be an absolute http(s) URL",
        id="token-url-no-scheme",
    ),
    pytest.param(
        toml(backend(token_url="http://idp.test/token")),
        API,
        "token_url",
        "must use https",
        id="token-url-http-remote",
    ),
    pytest.param(
        toml(backend(token_url="https://[idp.test/token")),
        API,
        "token_url",
        "not a valid URL",
        id="token-url-broken-bracket",
    ),
    pytest.param(
        toml(backend(token_url="https://idp.test:https/token")),
        API,
        "token_url",
        "not a valid URL",
        id="token-url-port-not-a-number",
    ),
    pytest.param(
        toml(backend(token_url=None, issuer="login.test")),
        API,
        "issuer",
        "must be an absolute http(s) URL",
        id="issuer-relative",
    ),
    pytest.param(
        toml(backend(token_proxy="proxy.test:3128")),
        API,
        "token_proxy",
        "must be an absolute http(s) URL",
        id="token-proxy-no-scheme",
    ),
    pytest.param(
        toml(backend(resource="https://[api.test")),
        API,
        "resource",
        "not a valid URI",
        id="resource-broken-bracket",
    ),
    # TOML syntax errors: where.
    pytest.param(
        toml('[[backend]]\nname = "api"\nclient_id "x"\n'),
        TOP,
        None,
        "Expected '=' after a key in a key/value pair (at line 3, column 11)",
        id="toml-missing-equals",
    ),
    pytest.param(
        toml('[[backend]]\nname = "api"\nclient_id = "abc\n'),
        TOP,
        None,
        "(at line 3, column 17)",
        id="toml-unterminated-string",
    ),
    pytest.param(
        toml('[[backend]]\nname = "api"\nname = "b"\n'),
        TOP,
        None,
        "Cannot overwrite a value (at line 3, column 11)",
        id="toml-duplicate-key",
    ),
    pytest.param(
        toml('[[backend]]\nname = "api"\nhosts = [api.test]\n'),
        TOP,
        None,
        "Invalid value (at line 3, column 10)",
        id="toml-bare-word",
    ),
    pytest.param(
        toml('[[backend]]\nname = "api"\nhosts = ["a",\n'),
        TOP,
        None,
        "Invalid value (at end of document)",
        id="toml-unclosed-array",
    ),
]


@pytest.mark.parametrize(("write", "label", "key", "words"), BAD_INPUTS)
def test_a_bad_config_is_refused_with_a_message_naming_where(
    tmp_path: Path, write: Write, label: str | None, key: str | None, words: str
) -> None:
    assert_refused(tmp_path, write, label, key, words)
