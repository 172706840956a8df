"""A token cache directory that fails: read-only, full, corrupt.

Every request is still answered with a token, the proxy says so once, and keeps its tokens in
memory. Tests run as root here, which file modes do not stop, so SQLite itself is made to
refuse: `query_only` for a read-only database (SQLITE_READONLY), `max_page_count` for a full
one (SQLITE_FULL), both pragmas that diskcache applies to every connection from its Settings.
(A cache file corrupted under a running proxy goes unnoticed: SQLite keeps reading its open
write-ahead log, so there is no fault to survive; a corrupt entry reads as missing, see
tests/unit/test_store.py.)
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import diskcache
import pytest

from tests.hardening.launch import Launcher
from tests.support.devservers import DevServersProcess
from tests.support.proxies import Proxy

pytestmark = pytest.mark.integration

WARNING = "keeping tokens in this process until it answers again"


def read_only(cache: Path) -> None:
    diskcache.Cache(str(cache)).close()  # a cache that worked before...
    _set_pragma(cache, "sqlite_query_only", 1)  # ...and may no longer be written


def full(cache: Path) -> None:
    names = itertools.count()
    with diskcache.Cache(str(cache), sqlite_max_page_count=64) as filler:
        for size in (4000, 400, 40, 4):  # the token table filled to its last bytes
            with contextlib.suppress(sqlite3.OperationalError):  # "database or disk is full"
                while True:
                    filler.set(f"filler/{next(names)}", b"x" * size)


def corrupt(cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "cache.db").write_bytes(b"\x00garbage, not an SQLite database\xff" * 512)


def _set_pragma(cache: Path, name: str, value: int) -> None:
    with sqlite3.connect(cache / "cache.db") as db:
        db.execute("INSERT OR REPLACE INTO Settings VALUES (?, ?)", (name, value))


FAULTS = [
    pytest.param(read_only, "readonly database", id="cache directory read-only"),
    pytest.param(full, "database or disk is full", id="cache directory full"),
    pytest.param(corrupt, "not a database", id="cache file corrupt at start"),
]


def answered(proxy: Proxy, url: str, count: int) -> list[int]:
    with proxy.client() as client:
        return [client.get(f"{url}/r{i}").status_code for i in range(count)]


@pytest.fixture(scope="module")
def devservers(launcher: Launcher) -> DevServersProcess:
    return launcher.devservers()


@pytest.mark.parametrize(("break_cache", "said"), FAULTS)
def test_a_broken_cache_costs_one_warning_and_no_request(
    launcher: Launcher,
    devservers: DevServersProcess,
    tmp_path: Path,
    break_cache: Callable[[Path], None],
    said: str,
) -> None:
    cache = tmp_path / "broken-cache"
    break_cache(cache)
    before = devservers.token_requests()
    proxy = launcher.proxy(devservers.backend_toml("ledger"), cache=cache)
    assert answered(proxy, devservers.backend_url, 20) == [200] * 20
    assert devservers.token_requests() - before == 1  # kept in memory, reused
    lines = [line for line in proxy.output().splitlines() if WARNING in line]
    assert len(lines) == 1, proxy.output()
    assert f"token cache {cache}: cannot" in lines[0]
    assert said in lines[0]
