"""Typed reads of one `[[backend]]` table; every error names the file, the backend and the key."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..model.credentials import Secret
from ..model.errors import ConfigError
from ..model.net import is_loopback

MAX_SECONDS = 366 * 24 * 3600.0


class TableReader:
    """Reads keys of one table; remembers which were read, so leftovers are unknown keys.

    `named` hears of every file a key names, before it is read (the watcher stats it then).
    """

    def __init__(
        self,
        path: str,
        index: int,
        table: dict[str, Any],
        environ: Mapping[str, str],
        named: Callable[[Path], None],
    ) -> None:
        self.path = path
        self.label = f"backend #{index}"
        self.table = table
        self.environ = environ
        self.named = named
        self.base_dir = Path(path).parent

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.label}: key '{key}': {problem}")

    def has(self, key: str) -> bool:
        return key in self.table

    def string(self, key: str, *, required: bool = True) -> str:
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing")
            return ""
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {toml_type(value)}")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        """A string or a list of strings; absent means empty."""
        value = self.table.get(key)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise self.error(key, "must be a string or a list of strings")
        if not all(item.strip() for item in items):
            raise self.error(key, "must not contain empty strings")
        return tuple(items)

    def string_table(self, key: str) -> tuple[tuple[str, str], ...]:
        """A table of string values, e.g. `extra_params = { tenant = "a" }`."""
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table of strings, not {toml_type(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise self.error(key, f"value of '{name}' must be a string, not {toml_type(item)}")
        return tuple(sorted(value.items()))

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, required=False) or default
        if value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def seconds(self, key: str, default: float, *, minimum: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number of seconds, not {toml_type(value)}")
        if not math.isfinite(value) or not minimum <= value <= MAX_SECONDS:
            raise self.error(key, f"must be between {minimum:g} and {MAX_SECONDS:.0f} seconds")
        return float(value)

    def count(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, not {toml_type(value)}")
        if not minimum <= value <= maximum:
            raise self.error(key, f"must be between {minimum:,} and {maximum:,}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {toml_type(value)}")
        return value

    def url(self, key: str, *, schemes: tuple[str, ...] = ("https",)) -> str:
        """An absolute URL without credentials or fragment; http only for loopback hosts."""
        url = self.string(key)
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as e:  # "Invalid IPv6 URL", a bad port
            raise self.error(key, f"{url!r} is not a valid URL ({e})") from e
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(key, f"must be an absolute http(s) URL, not {url!r}")
        if parts.username is not None or parts.password is not None:
            raise self.error(key, "must not carry credentials (user:password@)")
        if parts.fragment:
            raise self.error(key, "must not have a #fragment")
        if parts.scheme == "http" and "http" not in schemes and not is_loopback(parts.hostname):
            raise self.error(key, "must use https (http is allowed only for loopback hosts)")
        return url

    def resolve(self, key: str) -> Path:
        """A path; relative paths are relative to the config file's folder."""
        return self.base_dir / Path(self.string(key)).expanduser()

    def file(self, key: str) -> Path:
        """A readable file (`resolve`), which the configuration then depends on."""
        path = self.resolve(key)
        self.named(path)
        try:
            with path.open("rb"):
                pass
        except OSError as e:
            raise self.error(key, f"cannot read {path} ({reason(e)})") from e
        return path

    def secret(self, keys: tuple[str, ...]) -> tuple[Secret, Path | None]:
        """Exactly one of `keys`: the value itself, or (a key ending in `_env`) the environment
        variable that holds it, or (`_file`) the file; the file, if one was used."""
        given = [key for key in keys if key in self.table]
        if len(given) != 1:
            found = f"found {', '.join(given)}" if given else "found none"
            raise self.error(
                given[-1] if given else keys[0], f"give exactly one of {', '.join(keys)} ({found})"
            )
        key = given[0]
        value, source = self.string(key), None
        if key.endswith("_env"):
            if value not in self.environ:
                instead = [other for other in keys if other.endswith("_file")]
                raise self.error(
                    key,
                    f"environment variable {value} is not set (set it in the proxy's"
                    f" environment, or give {instead[0] if instead else 'another key'} instead)",
                )
            value = self.environ[value]
        elif key.endswith("_file"):
            source = self.file(key)
            try:
                value = source.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise self.error(key, f"cannot read {source} ({reason(e)})") from e
            value = value.removesuffix("\n").removesuffix("\r")
        if not value.strip():
            raise self.error(key, "the secret is empty")
        return Secret(value), source

    def refuse_unless(self, condition: bool, keys: tuple[str, ...], why: str) -> None:
        """Keys that only mean something in another set-up are errors, not silently ignored."""
        if not condition:
            for key in keys:
                if key in self.table:
                    raise self.error(key, why)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the nearest of `choices`, or nothing when none is near."""
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean '{near[0]}'?)" if near else ""


def toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
