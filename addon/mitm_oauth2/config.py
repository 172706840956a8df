"""The TOML file of `[[backend]]` tables, parsed and validated into typed settings."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .credentials import AuthMethod
from .credentials import ClientCredentials
from .credentials import Secret
from .credentials import TokenGrant
from .hosts import DEFAULT_PORTS
from .hosts import HostPattern
from .hosts import parse_host_pattern
from .policy import DEFAULT_REFRESH_MARGIN

DEFAULT_MAX_TOKEN_AGE = 3600.0
MAX_SECONDS = 366 * 24 * 3600.0
_SECRET_KEYS = ("client_secret", "client_secret_env", "client_secret_file")
_BACKEND_KEYS = frozenset(
    {"name", "hosts", "token_url", "client_id", "scope", "auth_method", "max_token_age"}
    | {"refresh_margin", "retry_on_401"}
    | set(_SECRET_KEYS)
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the backend and the key."""


@dataclass(frozen=True)
class BackendConfig:
    name: str
    hosts: tuple[HostPattern, ...]
    grant: TokenGrant
    retry_on_401: bool = True


@dataclass(frozen=True)
class Config:
    path: str
    backends: tuple[BackendConfig, ...]


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Reads and validates a config file; raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the configuration file ({_reason(e)})") from e
    return parse_config(text, str(path), os.environ if environ is None else environ)


def parse_config(text: str, path: str, environ: Mapping[str, str]) -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    unknown = sorted(set(document) - {"backend"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key '{unknown[0]}' (expected [[backend]] tables)"
        )
    tables = document.get("backend")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [[backend]] tables")
    base_dir = Path(path).parent
    backends: list[BackendConfig] = []
    seen_names: set[str] = set()
    seen_hosts: dict[tuple[str, bool, int | None], tuple[HostPattern, str]] = {}
    for index, table in enumerate(tables, start=1):
        backend = _BackendParser(path, index, table, environ, base_dir).parse()
        if backend.name in seen_names:
            raise ConfigError(f"{path}: backend '{backend.name}': key 'name': used twice")
        seen_names.add(backend.name)
        for host in backend.hosts:
            for slot in _slots(host):
                if slot in seen_hosts and seen_hosts[slot][1] != backend.name:
                    other, owner = seen_hosts[slot]
                    raise ConfigError(
                        f"{path}: backend '{backend.name}': key 'hosts': {host} overlaps {other}"
                        f" of backend '{owner}'"
                    )
                seen_hosts[slot] = (host, backend.name)
        backends.append(backend)
    return Config(path=path, backends=tuple(backends))


class _BackendParser:
    def __init__(
        self,
        path: str,
        index: int,
        table: Any,
        environ: Mapping[str, str],
        base_dir: Path,
    ) -> None:
        self.path = path
        self.label = f"backend #{index}"
        self.table = table
        self.environ = environ
        self.base_dir = base_dir

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.label}: key '{key}': {problem}")

    def parse(self) -> BackendConfig:
        if not isinstance(self.table, dict):
            raise ConfigError(f"{self.path}: {self.label}: must be a table ([[backend]])")
        name = self.string("name")
        if not _NAME.match(name):
            raise self.error("name", "use 1-64 letters, digits, '.', '_' or '-'")
        self.label = f"backend '{name}'"
        unknown = sorted(set(self.table) - _BACKEND_KEYS)
        if unknown:
            raise self.error(unknown[0], "unknown key")
        credentials = ClientCredentials(
            token_url=self.token_url(),
            client_id=self.string("client_id"),
            client_secret=self.secret(),
            scopes=self.scopes(),
            auth_method=self.auth_method(),
        )
        grant = TokenGrant(
            name,
            credentials,
            max_token_age=self.seconds("max_token_age", DEFAULT_MAX_TOKEN_AGE, minimum=1),
            refresh_margin=self.seconds("refresh_margin", DEFAULT_REFRESH_MARGIN, minimum=0),
        )
        return BackendConfig(
            name=name, hosts=self.hosts(), grant=grant, retry_on_401=self.flag("retry_on_401", True)
        )

    def string(self, key: str, *, required: bool = True) -> str:
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing")
            return ""
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_toml_type(value)}")
        if not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def hosts(self) -> tuple[HostPattern, ...]:
        value = self.table.get("hosts")
        if value is None:
            raise self.error("hosts", "missing")
        if not isinstance(value, list) or not value:
            raise self.error("hosts", 'must be a non-empty list of "host" or "host:port" strings')
        patterns: list[HostPattern] = []
        for entry in value:
            if not isinstance(entry, str):
                raise self.error("hosts", f"entries must be strings, not {_toml_type(entry)}")
            try:
                pattern = parse_host_pattern(entry)
            except ValueError as e:
                raise self.error("hosts", str(e)) from e
            if pattern in patterns:
                raise self.error("hosts", f"{pattern} is listed twice")
            patterns.append(pattern)
        return tuple(patterns)

    def token_url(self) -> str:
        url = self.string("token_url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error("token_url", f"must be an absolute http(s) URL, not {url!r}")
        if parts.username is not None or parts.password is not None:
            raise self.error("token_url", "must not carry credentials (user:password@)")
        if parts.fragment:
            raise self.error("token_url", "must not have a #fragment")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise self.error(
                "token_url", "must use https (http is allowed only for loopback hosts)"
            )
        return url

    def secret(self) -> Secret:
        given = [key for key in _SECRET_KEYS if key in self.table]
        if len(given) != 1:
            listed = ", ".join(_SECRET_KEYS)
            found = f"found {', '.join(given)}" if given else "found none"
            raise self.error(
                given[-1] if given else "client_secret", f"give exactly one of {listed} ({found})"
            )
        key = given[0]
        value = self.string(key)
        if key == "client_secret_env":
            if value not in self.environ:
                raise self.error(key, f"environment variable {value} is not set")
            value = self.environ[value]
        elif key == "client_secret_file":
            file = self.base_dir / Path(value).expanduser()
            try:
                value = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise self.error(key, f"cannot read {file} ({_reason(e)})") from e
            value = value.removesuffix("\n").removesuffix("\r")
        if not value.strip():
            raise self.error(key, "the secret is empty")
        return Secret(value)

    def scopes(self) -> tuple[str, ...]:
        value = self.string("scope", required=False)
        scopes: list[str] = []
        for scope in value.split():
            if not _SCOPE_TOKEN.match(scope):
                raise self.error("scope", f"{scope!r} is not a valid scope token (RFC 6749 §3.3)")
            if scope not in scopes:
                scopes.append(scope)
        return tuple(scopes)

    def auth_method(self) -> AuthMethod:
        value = self.string("auth_method", required=False) or AuthMethod.CLIENT_SECRET_BASIC
        try:
            return AuthMethod(value)
        except ValueError as e:
            choices = ", ".join(method.value for method in AuthMethod)
            raise self.error("auth_method", f"{value!r} is not one of {choices}") from e

    def seconds(self, key: str, default: float, *, minimum: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number of seconds, not {_toml_type(value)}")
        if not math.isfinite(value) or not minimum <= value <= MAX_SECONDS:
            raise self.error(key, f"must be between {minimum:g} and {MAX_SECONDS:.0f} seconds")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_toml_type(value)}")
        return value


def _slots(host: HostPattern) -> list[tuple[str, bool, int | None]]:
    """The (host, wildcard, port) places an entry claims: no port also means 80 and 443."""
    if host.port is None:
        ports: list[int | None] = [None, *DEFAULT_PORTS.values()]
    elif host.port in DEFAULT_PORTS.values():
        ports = [host.port, None]
    else:
        ports = [host.port]
    return [(host.host, host.wildcard, port) for port in ports]


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
