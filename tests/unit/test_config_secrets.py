"""Config parsing of client secrets: inline, from the environment, or from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mitm_oauth2.config.watch import read_config
from tests.support.config_helpers import ENV
from tests.support.config_helpers import SECRET
from tests.support.config_helpers import backend
from tests.support.config_helpers import refused
from tests.support.config_helpers import write


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
    (api,) = read_config(path).config.backends  # os.environ when no mapping is given
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
    (api,) = read_config(path, environ={}).config.backends
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
    (api,) = read_config(path, environ={}).config.backends
    assert api.grant.credentials.client_secret.reveal() == "abs-secret"
