"""Config parsing: a good file becomes typed settings, a bad one a message naming what to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mitm_oauth2.config import ConfigError
from mitm_oauth2.config import load_config
from mitm_oauth2.credentials import AuthMethod
from mitm_oauth2.hosts import HostPattern

SECRET = "s3cr3t-VALUE:%+&"
ENV = {"API_SECRET": SECRET}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    return repr(value)


def backend(**overrides: Any) -> str:
    """One [[backend]] table; an override of None drops the key."""
    table: dict[str, Any] = {
        "name": "api",
        "hosts": ["api.test"],
        "token_url": "https://idp.test/oauth/token",
        "client_id": "my-client",
        "client_secret": SECRET,
    }
    table.update(overrides)
    lines = [f"{key} = {_toml(value)}" for key, value in table.items() if value is not None]
    return "[[backend]]\n" + "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str, name: str = "backends.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):
    return load_config(write(tmp_path, text), environ=ENV if environ is None else environ)


def refused(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environ)
    message = str(info.value)
    assert str(tmp_path / "backends.toml") in message
    assert SECRET not in message
    return message


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
        load_config(tmp_path / "missing.toml", environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timeout = 3\n" + backend(), "unknown top-level key 'timeout'"),
        ("", "no [[backend]] tables"),
        ("[backend]\nname = 'api'\n", "no [[backend]] tables"),
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
    ("scope list", backend(scope=["a", "b"]), "backend 'api'", "scope", "array"),
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


def test_same_host_in_two_backends(tmp_path: Path) -> None:
    text = backend(hosts=["api.test"]) + backend(name="other", hosts=["API.test."])
    message = refused(tmp_path, text)
    assert "backend 'other': key 'hosts'" in message
    assert "'api'" in message


@pytest.mark.parametrize(
    ("first", "second"),
    [("api.test", "api.test:443"), ("api.test:80", "api.test"), ("*.api.test", "*.api.test:443")],
)
def test_default_port_overlaps_are_refused(tmp_path: Path, first: str, second: str) -> None:
    message = refused(tmp_path, backend(hosts=[first]) + backend(name="other", hosts=[second]))
    assert "backend 'other': key 'hosts'" in message
    assert "overlaps" in message


def test_other_ports_and_wildcards_do_not_overlap(tmp_path: Path) -> None:
    text = backend(hosts=["api.test", "*.api.test"]) + backend(
        name="other", hosts=["api.test:8443"]
    )
    assert len(load(tmp_path, text).backends) == 2


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("api.test/v1", "path"),
        ("https://api.test", "URL"),
        ("user@api.test", "URL"),
        ("api.test:99999", "port"),
        ("api.test:0", "port"),
        ("api.test:https", "port"),
        ("api.*.test", "wildcard"),
        ("*api.test", "wildcard"),
        ("*.10.0.0.1", "IP"),
        ("*.[::1]", "IP"),
        ("[::1", "'['"),
        ("bad_host!", "host name"),
        ("", "empty"),
    ],
)
def test_bad_host_entries(tmp_path: Path, entry: str, words: str) -> None:
    message = refused(tmp_path, backend(hosts=["ok.test", entry]))
    assert "backend 'api': key 'hosts'" in message
    assert words in message


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("/oauth/token", "absolute"),
        ("idp.test/oauth/token", "absolute"),
        ("ftp://idp.test/token", "absolute"),
        ("https://my-client:hunter2@idp.test/token", "credentials"),
        ("https://idp.test/token#frag", "fragment"),
        ("http://idp.example/token", "https"),
        ("http://10.0.0.1/token", "https"),
        ("http://localhost.evil.test/token", "https"),
    ],
)
def test_bad_token_url(tmp_path: Path, url: str, words: str) -> None:
    message = refused(tmp_path, backend(token_url=url))
    assert "backend 'api': key 'token_url'" in message
    assert words in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.test/oauth/token?tenant=1",
        "http://127.0.0.1:8080/token",
        "http://127.9.9.9/token",
        "http://localhost/token",
        "http://LOCALHOST:9000/token",
        "http://[::1]:9000/token",
    ],
)
def test_allowed_token_url(tmp_path: Path, url: str) -> None:
    (api,) = load(tmp_path, backend(token_url=url)).backends
    assert api.grant.credentials.token_url == url


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        ({"client_secret": None}, "client_secret", "found none"),
        ({"client_secret_env": "API_SECRET"}, "client_secret_env", "exactly one"),
        ({"client_secret": None, "client_secret_env": "NOT_SET"}, "client_secret_env", "NOT_SET"),
        ({"client_secret": "   "}, "client_secret", "empty"),
        ({"client_secret": 1234}, "client_secret", "string"),
        ({"client_secret": None, "client_secret_env": "BLANK"}, "client_secret_env", "empty"),
        ({"client_secret": None, "client_secret_file": "nope"}, "client_secret_file", "nope"),
        ({"client_secret": None, "client_secret_file": "."}, "client_secret_file", "cannot read"),
    ],
)
def test_secret_errors(tmp_path: Path, overrides: dict[str, Any], key: str, words: str) -> None:
    message = refused(tmp_path, backend(**overrides), {**ENV, "BLANK": " \t"})
    assert f"backend 'api': key '{key}'" in message
    assert words in message


def test_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MITM_OAUTH2_TEST_SECRET", "from-env")
    path = write(tmp_path, backend(client_secret=None, client_secret_env="MITM_OAUTH2_TEST_SECRET"))
    (api,) = load_config(path).backends  # os.environ when no mapping is given
    assert api.grant.credentials.client_secret.reveal() == "from-env"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"{SECRET}\n", SECRET),
        (f"{SECRET}\r\n", SECRET),
        (SECRET, SECRET),
        (f" {SECRET} \n", f" {SECRET} "),
    ],
)
def test_secret_file_relative_to_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, expected: str
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(content.encode())
    path = write(folder, backend(client_secret=None, client_secret_file="secret.txt"))
    monkeypatch.chdir(tmp_path)  # a path relative to the working directory would miss the file
    (api,) = load_config(path, environ={}).backends
    assert api.grant.credentials.client_secret.reveal() == expected


@pytest.mark.parametrize("content", [b"  \n", b"\n", b"\xff\xfe" + SECRET.encode()])
def test_secret_file_unusable(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "secret.txt").write_bytes(content)
    message = refused(tmp_path, backend(client_secret=None, client_secret_file="secret.txt"))
    assert "backend 'api': key 'client_secret_file'" in message


def test_secret_file_absolute_path(tmp_path: Path) -> None:
    secret_file = tmp_path / "elsewhere" / "secret"
    secret_file.parent.mkdir()
    secret_file.write_text("abs-secret\n")
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    path = write(config_dir, backend(client_secret=None, client_secret_file=str(secret_file)))
    (api,) = load_config(path, environ={}).backends
    assert api.grant.credentials.client_secret.reveal() == "abs-secret"


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
