"""Config parsing of addresses: host entries (and overlaps between backends) and token URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.config_helpers import backend
from tests.support.config_helpers import load
from tests.support.config_helpers import refused


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
        ("https://[idp.test/token", "not a valid URL (Invalid IPv6 URL)"),
        ("https://idp.test:https/token", "not a valid URL"),
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
