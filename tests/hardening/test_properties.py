"""Property-based tests (Hypothesis): host matching sends a token only where configured, and
config parsing either loads or raises the project's ConfigError naming the file and the key.

Examples are few and derandomized, so the module runs in seconds and CI is reproducible.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from mitm_oauth2.config.backend import KEYS
from mitm_oauth2.config.file import Config
from mitm_oauth2.config.file import parse_config
from mitm_oauth2.config.hosts import DEFAULT_PORTS
from mitm_oauth2.config.hosts import HostRouter
from mitm_oauth2.config.hosts import parse_host_pattern
from mitm_oauth2.model.errors import ConfigError

FAST = settings(max_examples=100, derandomize=True, deadline=None)

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
NAME = st.lists(LABEL, min_size=1, max_size=3).map(".".join).map(lambda name: f"{name}.test")
PORT = st.integers(min_value=1, max_value=65535)
SCHEME = st.sampled_from(sorted(DEFAULT_PORTS))


def routes(entry: str, prefix: str = "/") -> HostRouter[str]:
    return HostRouter([(parse_host_pattern(entry), prefix, entry)])


def recased(name: str, flips: list[bool]) -> str:
    flips = (flips + [False] * len(name))[: len(name)]
    return "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=True))


@FAST
@given(name=NAME, flips=st.lists(st.booleans()), dot=st.booleans(), scheme=SCHEME)
def test_the_configured_host_in_any_case_with_or_without_the_root_dot_matches(
    name: str, flips: list[bool], dot: bool, scheme: str
) -> None:
    host = recased(name, flips) + ("." if dot else "")
    assert routes(name).match(host, DEFAULT_PORTS[scheme], scheme) == name


@FAST
@given(name=NAME, extra=LABEL, where=st.sampled_from(["prefix", "suffix", "sub", "parent"]))
def test_a_host_that_only_contains_a_configured_one_never_matches(
    name: str, extra: str, where: str
) -> None:
    host = {
        "prefix": extra + name,  # evilapi.test
        "suffix": f"{name}.{extra}",  # api.test.evil
        "sub": f"{extra}.{name}",  # x.api.test
        "parent": name.split(".", 1)[1],  # test (or example.test)
    }[where]
    for scheme, port in DEFAULT_PORTS.items():
        assert routes(name).match(host, port, scheme) is None
        assert routes(f"{name}:{port}").match(host, port, scheme) is None


@FAST
@given(name=NAME, configured=PORT, requested=PORT, scheme=SCHEME)
def test_ports_are_respected(name: str, configured: int, requested: int, scheme: str) -> None:
    explicit = routes(f"{name}:{configured}").match(name, requested, scheme)
    assert (explicit is not None) == (requested == configured)
    bare = routes(name).match(name, requested, scheme)  # no port: the scheme's default
    assert (bare is not None) == (requested == DEFAULT_PORTS[scheme])


@FAST
@given(domain=NAME, sub=st.lists(LABEL, min_size=1, max_size=3).map(".".join), extra=LABEL)
def test_a_wildcard_covers_subdomains_only(domain: str, sub: str, extra: str) -> None:
    router = routes(f"*.{domain}")
    assert router.match(f"{sub}.{domain}", 443, "https") == f"*.{domain}"
    assert router.match(domain, 443, "https") is None
    assert router.match(extra + domain, 443, "https") is None
    assert router.match(f"{sub}.{domain}.{extra}", 443, "https") is None


SEGMENT = st.from_regex(r"[A-Za-z0-9_~-]{1,8}", fullmatch=True)


@FAST
@given(prefix=st.lists(SEGMENT, min_size=1, max_size=3), rest=st.lists(SEGMENT, max_size=3))
def test_path_prefixes_cover_whole_segments(prefix: list[str], rest: list[str]) -> None:
    configured = "/" + "/".join(prefix)
    router = routes("api.test", configured)
    under = "/".join([configured, *rest])
    assert router.match("api.test", 443, "https", under) == "api.test"
    assert router.match("api.test", 443, "https", configured + "x/" + "/".join(rest)) is None
    escaped = "/".join([configured, *[".."] * len(prefix), "other"])
    assert router.match("api.test", 443, "https", escaped) is None


# --- config parsing ---

PATH = "/nonexistent-hardening-dir/backends.toml"  # file keys never find a file here
BASE = {
    "name": "api",
    "hosts": ["api.test"],
    "token_url": "https://idp.test/oauth/token",
    "client_id": "my-client",
    "client_secret": "s3cr3t-VALUE",
}
# Keys whose value decides which other keys apply: their errors may name that other key.
DECIDING = {"auth_method", "issuer", "token_url", "client_secret_env", "client_secret_file"}
PLAUSIBLE = [
    "api.test", "*.api.test", "[::1]:8443", "api.test:0", "https://idp.test/t", "https://[idp",
    "http://127.0.0.1:9/t", "client_secret_post", "private_key_jwt", "/", "/api", "{token}",
    "Bearer {token}", "X-Api-Key", "read write", "", " ", "\n", "☃", "..", "~",
]  # fmt: skip


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)  # inf and -inf are TOML too
    if isinstance(value, int | datetime.date):
        return str(value) if isinstance(value, int) else value.isoformat()
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{ " + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_string(text: str) -> str:
    """A TOML basic string: control characters, quote and backslash escaped, the rest as is."""
    escaped = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c for c in text
    )
    return f'"{escaped}"'


def outcome(text: str) -> Config | ConfigError:
    """What parse_config makes of `text`; any other exception fails the test."""
    try:
        return parse_config(text, PATH, {})
    except ConfigError as e:
        return e


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
SCALAR = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.dates()
    | TEXT
    | st.sampled_from(PLAUSIBLE)
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(key=st.sampled_from(sorted(KEYS)), value=VALUE)
def test_any_value_of_any_key_loads_or_is_a_config_error_naming_it(key: str, value: Any) -> None:
    table = {**BASE, key: value}
    text = "[[backend]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
    result = outcome(text)
    if isinstance(result, Config):
        (backend,) = result.backends
        assert backend.name == table["name"]
        return
    message = str(result)
    assert message.startswith(f"{PATH}: backend ")
    assert f"key '{key}'" in message or (key in DECIDING and "key '" in message)
    assert "s3cr3t-VALUE" not in message


URLISH = st.tuples(
    st.sampled_from(["https://", "http://", "ftp://", "//", ""]),
    st.text(alphabet="[]:@/#?%.a1-", max_size=14),
).map("".join)
HOSTISH = st.text(alphabet="[]:*.@/a1-", max_size=10)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    key=st.sampled_from(["token_url", "issuer", "token_proxy", "resource", "hosts"]), data=st.data()
)
def test_url_and_host_shaped_values_load_or_are_config_errors(
    key: str, data: st.DataObject
) -> None:
    value = data.draw(st.lists(HOSTISH, min_size=1, max_size=2) if key == "hosts" else URLISH)
    table = {**BASE, key: value}
    if key == "issuer":
        del table["token_url"]
    text = "[[backend]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
    result = outcome(text)
    assert isinstance(result, Config) or f"backend 'api': key '{key}': " in str(result)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(text=st.text(max_size=80) | st.lists(st.sampled_from(
    ["[[backend]]", "[backend]", "name = 'a'", 'hosts = ["a.test"]', "x = ", "=", "[", '"', "\n"]
)).map("\n".join))  # fmt: skip
def test_any_text_loads_or_is_a_config_error_naming_the_file(text: str) -> None:
    result = outcome(text)
    assert isinstance(result, Config) or str(result).startswith(f"{PATH}: ")
