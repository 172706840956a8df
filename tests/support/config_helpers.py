"""Helpers for the config tests: [[backend]] tables as TOML text, written and loaded, and
`refused`, which expects a ConfigError naming the file and never the secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mitm_oauth2.config.watch import read_config
from mitm_oauth2.model.errors import ConfigError

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
    return read_config(write(tmp_path, text), environ=ENV if environ is None else environ).config


def refused(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environ)
    message = str(info.value)
    assert str(tmp_path / "backends.toml") in message
    assert SECRET not in message
    return message
