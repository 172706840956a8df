"""Bad configuration files, part 1: wrong types, unknown keys, duplicate names, overlapping or
malformed hosts. Each is refused with one ConfigError line naming the file, the backend (by name,
or by position before the name is known) and the key, never the secret (config_cases.py). What
mitmdump does with such an error at start-up and on reload is tests/integration's business
(test_startup.py, test_reload.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hardening.config_cases import API
from tests.hardening.config_cases import TOP
from tests.hardening.config_cases import Write
from tests.hardening.config_cases import assert_refused
from tests.hardening.config_cases import toml
from tests.hardening.config_cases import two
from tests.support.config_helpers import backend

BAD_INPUTS = [
    # Wrong types.
    pytest.param(
        toml(backend(name=5)),
        "backend #1",
        "name",
        "must be a string, not an integer",
        id="name-integer",
    ),
    pytest.param(
        toml(backend(hosts="api.test")), API, "hosts", "must be a non-empty list", id="hosts-string"
    ),
    pytest.param(toml(backend(hosts=[443])), API, "hosts", "list of strings", id="hosts-integer"),
    pytest.param(
        toml(backend(max_token_age="3600")),
        API,
        "max_token_age",
        "must be a number of seconds, not a string",
        id="max-token-age-string",
    ),
    pytest.param(
        toml(backend(max_token_age=float("inf"))),
        API,
        "max_token_age",
        "must be between",
        id="max-token-age-infinite",
    ),
    pytest.param(
        toml(backend(token_timeout=0)),
        API,
        "token_timeout",
        "must be between",
        id="token-timeout-zero",
    ),
    pytest.param(
        toml(backend(retry_on_401="yes")),
        API,
        "retry_on_401",
        "must be true or false, not a string",
        id="retry-on-401-string",
    ),
    pytest.param(
        toml(backend(allow_plain_http=1)),
        API,
        "allow_plain_http",
        "must be true or false",
        id="allow-plain-http-number",
    ),
    pytest.param(
        toml(backend(scope=["read", 7])),
        API,
        "scope",
        "list of strings",
        id="scope-list-with-integer",
    ),
    pytest.param(
        toml(backend() + "extra_params = { tenant = 1 }\n"),
        API,
        "extra_params",
        "value of 'tenant' must be a string, not an integer",
        id="extra-params-integer",
    ),
    pytest.param(
        toml(backend(client_id=["a"])),
        API,
        "client_id",
        "must be a string, not an array",
        id="client-id-array",
    ),
    # Unknown keys.
    pytest.param(
        toml(backend(client_secrett="x")), API, "client_secrett", "unknown key", id="unknown-key"
    ),
    pytest.param(
        toml("timeout = 3\n" + backend()),
        TOP,
        None,
        "unknown top-level key 'timeout'",
        id="unknown-top-level-key",
    ),
    pytest.param(
        toml(backend(auth_method="private_key_jwt")),
        API,
        "client_secret",
        "not used by auth_method private_key_jwt",
        id="key-meaningless-for-method",
    ),
    pytest.param(
        toml("[backend]\nname = 'api'\n"),
        TOP,
        None,
        "write each backend as [[backend]]",
        id="backend-table-not-array",
    ),
    # Duplicate names, overlapping hosts.
    pytest.param(
        two({"hosts": ["a.test"]}, {"name": "api", "hosts": ["b.test"]}),
        API,
        "name",
        "used twice",
        id="duplicate-names",
    ),
    pytest.param(
        two({}, {"hosts": ["api.test"]}),
        "backend 'other'",
        "hosts",
        "api.test overlaps api.test of backend 'api'",
        id="overlapping-hosts",
    ),
    pytest.param(
        two({}, {"hosts": ["api.test:443"]}),
        "backend 'other'",
        "hosts",
        "overlaps",
        id="overlapping-default-port",
    ),
    pytest.param(
        two({}, {"hosts": ["API.Test."]}),
        "backend 'other'",
        "hosts",
        "overlaps",
        id="overlapping-case-and-dot",
    ),
    pytest.param(
        two({"hosts": ["bücher.example"]}, {"hosts": ["xn--bcher-kva.example"]}),
        "backend 'other'",
        "hosts",
        "overlaps",
        id="overlapping-idn-spellings",
    ),
    pytest.param(
        toml(backend(hosts=["api.test", "API.TEST."])),
        API,
        "hosts",
        "listed twice",
        id="host-listed-twice",
    ),
    # Bad host entries.
    pytest.param(
        toml(backend(hosts=["https://api.test/v1"])), API, "hosts", "is a URL", id="host-is-url"
    ),
    pytest.param(
        toml(backend(hosts=["user@api.test"])), API, "hosts", "is a URL", id="host-with-userinfo"
    ),
    pytest.param(
        toml(backend(hosts=["api.test:70000"])),
        API,
        "hosts",
        "port must be a number",
        id="host-port-out-of-range",
    ),
    pytest.param(
        toml(backend(hosts=["api.test.."])),
        API,
        "hosts",
        "not a valid host name",
        id="host-two-trailing-dots",
    ),
    pytest.param(
        toml(backend(hosts=["☃.example"])),
        API,
        "hosts",
        "not a valid internationalised host name",
        id="host-idn-disallowed",
    ),
]


@pytest.mark.parametrize(("write", "label", "key", "words"), BAD_INPUTS)
def test_a_bad_config_is_refused_with_a_message_naming_where(
    tmp_path: Path, write: Write, label: str | None, key: str | None, words: str
) -> None:
    assert_refused(tmp_path, write, label, key, words)
