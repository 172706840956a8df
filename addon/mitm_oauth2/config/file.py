"""The TOML file of `[[backend]]` tables, parsed and validated into typed settings."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..model.errors import ConfigError
from .backend import BackendConfig
from .backend import parse_backend
from .hosts import DEFAULT_PORTS
from .hosts import HostPattern
from .table import TableReader
from .table import did_you_mean

# (host, wildcard, port, path prefix): the requests one `hosts` entry of a backend claims.
_Slot = tuple[str, bool, int | None, str]


@dataclass(frozen=True)
class Config:
    path: str
    backends: tuple[BackendConfig, ...]


def parse_config(
    text: str,
    path: str,
    environ: Mapping[str, str],
    named: Callable[[Path], None] = lambda file: None,
) -> Config:
    """Validates the text of a config file; raises ConfigError. `named` hears of every file
    the backends name (secrets, keys, certificates, CA bundles) before it is read."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    unknown = sorted(set(document) - {"backend"})
    if unknown:
        hint = did_you_mean(unknown[0], ["backend"]) or " (expected [[backend]] tables)"
        raise ConfigError(f"{path}: unknown top-level key '{unknown[0]}'{hint}")
    tables = document.get("backend")
    if isinstance(tables, dict):
        raise ConfigError(
            f"{path}: write each backend as [[backend]] (an array of tables), not [backend]"
        )
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [[backend]] tables")
    backends: list[BackendConfig] = []
    seen_names: set[str] = set()
    seen: dict[_Slot, tuple[HostPattern, str]] = {}
    for index, table in enumerate(tables, start=1):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: backend #{index}: must be a table ([[backend]])")
        backend = parse_backend(TableReader(path, index, table, environ, named))
        if backend.name in seen_names:
            raise ConfigError(f"{path}: backend '{backend.name}': key 'name': used twice")
        seen_names.add(backend.name)
        for host in backend.hosts:
            for slot in _slots(host, backend.path_prefix):
                if slot in seen and seen[slot][1] != backend.name:
                    other, owner = seen[slot]
                    raise ConfigError(
                        f"{path}: backend '{backend.name}': key 'hosts': {host} overlaps {other}"
                        f" of backend '{owner}' (give them different path_prefix values)"
                    )
                seen[slot] = (host, backend.name)
        backends.append(backend)
    return Config(path=path, backends=tuple(backends))


def _slots(host: HostPattern, prefix: str) -> list[_Slot]:
    """The places an entry claims: no port also means 80 and 443."""
    if host.port is None:
        ports: list[int | None] = [None, *DEFAULT_PORTS.values()]
    elif host.port in DEFAULT_PORTS.values():
        ports = [host.port, None]
    else:
        ports = [host.port]
    return [(host.host, host.wildcard, port, prefix) for port in ports]
