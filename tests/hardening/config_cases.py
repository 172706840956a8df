"""Helpers for the bad-configuration tables (test_bad_config*.py): config files written into a
folder, and the check every case makes of the ConfigError it must raise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mitm_oauth2.config.watch import read_config
from mitm_oauth2.model.errors import ConfigError
from tests.support.config_helpers import SECRET
from tests.support.config_helpers import backend

ENV = {"API_SECRET": SECRET, "BLANK": "  \t"}
Write = Callable[[Path], Path]  # writes the case's files into a folder; the config's path


def toml(text: str, files: dict[str, bytes] | None = None) -> Write:
    def write(folder: Path) -> Path:
        for name, content in (files or {}).items():
            (folder / name).write_bytes(content)
        path = folder / "backends.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def raw_file(content: bytes | None, name: str = "backends.toml") -> Write:
    """The config file as bytes; None: no file at all; b"/": a folder in its place."""

    def write(folder: Path) -> Path:
        path = folder / name
        if content == b"/":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        return path

    return write


def two(first: dict[str, object], second: dict[str, object]) -> Write:
    return toml(backend(**first) + backend(**{"name": "other", **second}))


API = "backend 'api'"
TOP = None  # errors about the file itself: no backend, no key


def assert_refused(
    folder: Path, write: Write, label: str | None, key: str | None, words: str
) -> None:
    """Loading fails with one ConfigError line: the file, then the backend and the key (when the
    error is about one), the expected words, never the secret; TOML errors say invalid TOML."""
    path = write(folder)
    with pytest.raises(ConfigError) as info:
        _ = read_config(path, environ=ENV).config
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert words in message
    if label is not None:
        assert f"{path}: {label}: key '{key}': " in message
    if "(at " in words:
        assert f"{path}: invalid TOML: " in message
    assert SECRET not in message
    assert "\n" not in message
