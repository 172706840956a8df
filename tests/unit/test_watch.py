"""The config watcher: a changed TOML file is re-read and applied; a broken one keeps the last good
configuration and is reported once. `check_once` is called directly: no sleeping."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mitm_oauth2.config import watch
from tests.unit.watch_helpers import SECRET_A
from tests.unit.watch_helpers import SECRET_B
from tests.unit.watch_helpers import Recorder
from tests.unit.watch_helpers import age
from tests.unit.watch_helpers import records
from tests.unit.watch_helpers import replace
from tests.unit.watch_helpers import toml

pytestmark = pytest.mark.anyio


async def test_unchanged_files_are_only_stat_ed(
    following, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher, path = following
    age(path)
    watcher.follow(watcher.load(path))
    reads: list[Path] = []
    monkeypatch.setattr(watch, "read_config", lambda p, env=None: reads.append(p))
    assert await watcher.check_once() is False
    assert reads == []
    assert recorder.applied == []


async def test_changed_secret_is_applied_and_logged_once(
    following, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    caplog.set_level(logging.DEBUG, logger="mitm_oauth2")
    replace(path, toml(SECRET_B))
    assert await watcher.check_once() is True
    assert recorder.secrets() == [SECRET_B]
    assert await watcher.check_once() is False  # re-read (racy mtime), nothing new
    assert records(caplog, logging.INFO) == [f"oauth2: reloaded 1 backend(s) from {path}"]
    assert SECRET_A not in caplog.text
    assert SECRET_B not in caplog.text


async def test_same_size_rewrite_in_place_is_not_missed(following, recorder: Recorder) -> None:
    """Coarse timestamps can leave size, inode and mtime as they were: recent files are re-read."""
    watcher, path = following
    path.write_text(toml(SECRET_B), encoding="utf-8")
    assert await watcher.check_once() is True
    assert recorder.secrets() == [SECRET_B]


async def test_identical_rewrite_is_no_reload(
    following, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    caplog.set_level(logging.INFO, logger="mitm_oauth2")
    replace(path, toml())
    assert await watcher.check_once() is False
    assert recorder.applied == []
    assert caplog.records == []


async def test_broken_file_keeps_the_last_good_config_and_warns_once(
    following, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    caplog.set_level(logging.INFO, logger="mitm_oauth2")
    replace(path, toml(SECRET_B) + "[[backend\n")
    assert await watcher.check_once() is False
    assert await watcher.check_once() is False  # read again: same problem, not said again
    os.utime(path)  # touched, still the same problem
    assert await watcher.check_once() is False
    (warning,) = records(caplog, logging.WARNING)
    assert warning.startswith(f"oauth2: keeping the last good configuration: {path}: invalid TOML")
    assert recorder.applied == []

    replace(path, toml(SECRET_B).replace("client_id", "clientid"))  # another problem: said
    assert await watcher.check_once() is False
    assert "backend 'api': key 'clientid': unknown key" in records(caplog, logging.WARNING)[1]

    replace(path, toml())  # fixed, even back to what runs: a reload, and said so
    assert await watcher.check_once() is True
    assert recorder.secrets() == [SECRET_A]
    assert records(caplog, logging.INFO) == [f"oauth2: reloaded 1 backend(s) from {path}"]

    replace(path, toml() + "[[backend\n")  # broken again after a good one: said again
    assert await watcher.check_once() is False
    assert len(records(caplog, logging.WARNING)) == 3
    assert SECRET_A not in caplog.text
    assert SECRET_B not in caplog.text


async def test_deleted_file_keeps_the_config_until_it_is_back(
    following, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    path.unlink()
    assert await watcher.check_once() is False
    assert "cannot read the configuration file" in caplog.text
    assert str(path) in caplog.text
    replace(path, toml(SECRET_B))
    assert await watcher.check_once() is True
    assert recorder.secrets() == [SECRET_B]


async def test_refused_by_apply_is_a_warning(
    following, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    recorder.refuse = ValueError("host api.test is listed twice")
    replace(path, toml(SECRET_B))
    assert await watcher.check_once() is False
    assert await watcher.check_once() is False
    (warning,) = records(caplog, logging.WARNING)
    assert f"{path}: host api.test is listed twice" in warning
    recorder.refuse = None
    replace(path, toml(SECRET_B, extra="max_token_age = 60\n"))
    assert await watcher.check_once() is True
