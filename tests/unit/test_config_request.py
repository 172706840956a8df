"""Config keys of the token request and of injection: scope, audience, resource, extra_params,
token_headers, the token call's transport, header, header_format and path_prefix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import trustme

from mitm_oauth2.model.credentials import TokenTransport
from tests.support.config_helpers import backend
from tests.support.config_helpers import load
from tests.support.config_helpers import refused


def table(key: str, values: dict[str, Any]) -> str:
    """An inline TOML table line, appended to the last [[backend]]."""
    items = ", ".join(f"{json.dumps(name)} = {json.dumps(value)}" for name, value in values.items())
    return f"{key} = {{ {items} }}\n"


def only(tmp_path: Path, text: str):
    (api,) = load(tmp_path, text).backends
    return api


def test_request_parameters(tmp_path: Path) -> None:
    text = backend(
        scope=["read", "write admin", "read"],
        audience="https://api.test",
        resource=["https://api.test/v1", "urn:example:billing"],
    )
    text += table("extra_params", {"tenant": "a b", "prompt": ""})
    text += table("token_headers", {"X-Tenant": "t1", "User-Agent": "proxy/1"})
    creds = only(tmp_path, text).grant.credentials
    assert creds.scopes == ("read", "write", "admin")
    assert creds.scope == "read write admin"
    assert creds.audience == "https://api.test"
    assert creds.resources == ("https://api.test/v1", "urn:example:billing")
    assert creds.extra_params == (("prompt", ""), ("tenant", "a b"))
    assert creds.token_headers == (("User-Agent", "proxy/1"), ("X-Tenant", "t1"))


def test_defaults(tmp_path: Path) -> None:
    api = only(tmp_path, backend())
    creds = api.grant.credentials
    assert (creds.scopes, creds.audience, creds.resources) == ((), None, ())
    assert (creds.extra_params, creds.token_headers) == ((), ())
    assert creds.transport == TokenTransport(timeout=10.0)
    assert (api.header, api.header_format, api.path_prefix) == (
        "Authorization",
        "Bearer {token}",
        "/",
    )


def test_single_resource_string(tmp_path: Path) -> None:
    creds = only(tmp_path, backend(resource="https://api.test")).grant.credentials
    assert creds.resources == ("https://api.test",)


def test_transport_settings(tmp_path: Path) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    text = backend(
        token_timeout=2.5, token_ca_bundle="ca.pem", token_proxy="http://proxy.test:3128"
    )
    transport = only(tmp_path, text).grant.credentials.transport
    digest = hashlib.sha256((tmp_path / "ca.pem").read_bytes()).hexdigest()
    assert transport == TokenTransport(
        2.5, str(tmp_path / "ca.pem"), "http://proxy.test:3128", ca_digest=digest
    )


@pytest.mark.parametrize("timeout", [0.1, 1, 600])
def test_token_timeout_bounds_allowed(tmp_path: Path, timeout: float) -> None:
    transport = only(tmp_path, backend(token_timeout=timeout)).grant.credentials.transport
    assert transport.timeout == timeout


def test_injection_settings(tmp_path: Path) -> None:
    api = only(tmp_path, backend(header="X-Api-Key", header_format="{token}", path_prefix="/v1"))
    assert (api.header, api.header_format, api.path_prefix) == ("X-Api-Key", "{token}", "/v1")


BAD = [
    # scope
    ({"scope": 'read "write"'}, "scope", "not a valid scope token"),
    ({"scope": ["read", "a\\b"]}, "scope", "not a valid scope token"),
    ({"scope": ["read", "é"]}, "scope", "not a valid scope token"),
    ({"scope": 5}, "scope", "must be a string or a list of strings"),
    ({"scope": ["read", 5]}, "scope", "must be a string or a list of strings"),
    ({"scope": ["read", " "]}, "scope", "must not contain empty strings"),
    # audience
    ({"audience": 5}, "audience", "must be a string"),
    ({"audience": " "}, "audience", "must not be empty"),
    # resource (RFC 8707 §2: absolute, no fragment)
    ({"resource": "https://api.test/#frag"}, "resource", "without #fragment"),
    ({"resource": "/v1/api"}, "resource", "not an absolute URI"),
    ({"resource": ["https://api.test", "api.test"]}, "resource", "not an absolute URI"),
    ({"resource": True}, "resource", "string or a list"),
    # token transport
    ({"token_timeout": 0}, "token_timeout", "between 0.1 and"),
    ({"token_timeout": 0.05}, "token_timeout", "between 0.1 and"),
    ({"token_timeout": -1}, "token_timeout", "between"),
    ({"token_timeout": 1e9}, "token_timeout", "between"),
    ({"token_timeout": "10"}, "token_timeout", "must be a number of seconds, not a string"),
    ({"token_timeout": True}, "token_timeout", "not a boolean"),
    ({"token_ca_bundle": "nope.pem"}, "token_ca_bundle", "cannot read"),
    ({"token_ca_bundle": "."}, "token_ca_bundle", "cannot read"),
    ({"token_ca_bundle": 1}, "token_ca_bundle", "must be a string"),
    ({"token_proxy": "proxy.test:3128"}, "token_proxy", "absolute http(s) URL"),
    ({"token_proxy": "socks5://proxy.test:1080"}, "token_proxy", "absolute http(s) URL"),
    ({"token_proxy": "http://:3128"}, "token_proxy", "absolute"),
    ({"token_proxy": "http://proxy.test:3128#x"}, "token_proxy", "fragment"),
    # header
    ({"header": "X Api Key"}, "header", "not a header name we may set"),
    ({"header": "X-Key:"}, "header", "not a header name"),
    ({"header": "Host"}, "header", "not a header name"),
    ({"header": "content-length"}, "header", "not a header name"),
    ({"header": ""}, "header", "must not be empty"),
    ({"header": 1}, "header", "must be a string"),
    # header_format
    ({"header_format": "Bearer"}, "header_format", "must contain {token} once"),
    ({"header_format": "{token} {token}"}, "header_format", "must contain {token} once"),
    ({"header_format": "Bearer {token} {x}"}, "header_format", "no other braces"),
    ({"header_format": "{{token}}"}, "header_format", "no other braces"),
    ({"header_format": "Bearer {TOKEN}"}, "header_format", "must contain {token}"),
    ({"header_format": "Bearer {token}\r\nX-Evil: 1"}, "header_format", "line breaks"),
    ({"header_format": "Bearer\t{token}\n"}, "header_format", "printable"),
    # path_prefix
    ({"path_prefix": "api"}, "path_prefix", "must start with '/'"),
    ({"path_prefix": "/api?x=1"}, "path_prefix", "no query"),
    ({"path_prefix": "/api#top"}, "path_prefix", "fragment"),
    ({"path_prefix": ""}, "path_prefix", "must not be empty"),
    ({"path_prefix": ["/a"]}, "path_prefix", "must be a string"),
]


@pytest.mark.parametrize(("overrides", "key", "words"), BAD)
def test_bad_values(tmp_path: Path, overrides: dict[str, Any], key: str, words: str) -> None:
    message = refused(tmp_path, backend(**overrides))
    assert f"backend 'api': key '{key}'" in message
    assert words in message


RESERVED = ["grant_type", "scope", "audience", "resource", "client_id", "client_secret"]
RESERVED += ["client_assertion", "client_assertion_type"]
TABLES = [
    *[({name: "x"}, "extra_params", f"'{name}' is set by the grant itself") for name in RESERVED],
    ({"tenant": 1}, "extra_params", "value of 'tenant' must be a string, not an integer"),
    ({"tenant": ["a"]}, "extra_params", "value of 'tenant' must be a string, not an array"),
    ({"Authorization": "x"}, "token_headers", "'Authorization' cannot be set"),
    ({"authorization": "x"}, "token_headers", "'authorization' cannot be set"),
    ({"Host": "idp.test"}, "token_headers", "'Host' cannot be set"),
    ({"Content-Type": "text/plain"}, "token_headers", "cannot be set"),
    ({"Content-Length": "0"}, "token_headers", "cannot be set"),
    ({"X Tenant": "t1"}, "token_headers", "'X Tenant' cannot be set"),
    (
        {"X-Tenant": "t1\r\nX-Evil: 1"},
        "token_headers",
        "the value of 'X-Tenant' must be printable ASCII",
    ),
    ({"X-Tenant": "t1\nX-Evil: 1"}, "token_headers", "must be printable ASCII"),
    ({"X-Tenant": 1}, "token_headers", "value of 'X-Tenant' must be a string"),
]


@pytest.mark.parametrize(("values", "key", "words"), TABLES)
def test_bad_tables(tmp_path: Path, values: dict[str, Any], key: str, words: str) -> None:
    message = refused(tmp_path, backend() + table(key, values))
    assert f"backend 'api': key '{key}'" in message
    assert words in message
    assert "X-Evil" not in message  # a header value may be a credential: never shown


@pytest.mark.parametrize("key", ["extra_params", "token_headers"])
def test_table_keys_must_be_tables(tmp_path: Path, key: str) -> None:
    message = refused(tmp_path, backend(**{key: "tenant=a"}))
    assert f"key '{key}': must be a table of strings, not a string" in message


def test_one_host_several_prefixes(tmp_path: Path) -> None:
    text = backend(path_prefix="/v1") + backend(name="v2", path_prefix="/v2")
    text += backend(name="rest", hosts=["api.test:443"])
    prefixes = [(b.name, b.path_prefix) for b in load(tmp_path, text).backends]
    assert prefixes == [("api", "/v1"), ("v2", "/v2"), ("rest", "/")]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({}, {}),
        ({"path_prefix": "/v1"}, {"path_prefix": "/v1"}),
        ({"path_prefix": "/v1"}, {"path_prefix": "/v1", "hosts": ["api.test:443"]}),
        ({"path_prefix": "/v1", "hosts": ["*.test"]}, {"path_prefix": "/v1", "hosts": ["*.test"]}),
    ],
)
def test_same_prefix_on_one_host_is_refused(tmp_path: Path, first: dict, second: dict) -> None:
    message = refused(tmp_path, backend(**first) + backend(name="other", **second))
    assert "backend 'other': key 'hosts'" in message
    assert "backend 'api'" in message
    assert "path_prefix" in message


def test_ca_bundle_without_certificates_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    assert "token_ca_bundle" in refused(tmp_path, backend(token_ca_bundle="ca.pem"))
