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
from tests.unit.watch_helpers import assert_no_secret_in
from tests.unit.watch_helpers import records
from tests.unit.watch_helpers import rewrite
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
    assert await rewrite(watcher, path, toml(SECRET_B)) is True
    assert recorder.secrets() == [SECRET_B]
    assert await watcher.check_once() is False  # re-read (racy mtime), nothing new
    assert records(caplog, logging.INFO) == [f"oauth2: reloaded 1 backend(s) from {path}"]
    assert_no_secret_in(caplog.text)


async def test_same_size_rewrite_in_place_is_not_missed(following, recorder: Recorder) -> None:
    """Coarse timestamps can leave size, inode and mtime as they were: recent files are re-read."""
    watcher, path = following
    path.write_text(toml(SECRET_B), encoding="utf-8")
    assert await watcher.check_once() is True
    assert recorder.secrets() == [SECRET_B]


async def test_identical_rewrite_is_no_reload(
    following, recorder: Recorder, addon_log: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    assert await rewrite(watcher, path, toml()) is False
    assert recorder.applied == []
    assert addon_log.records == []


async def test_broken_file_keeps_the_last_good_config_and_warns_once(
    following, recorder: Recorder, addon_log: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    assert await rewrite(watcher, path, toml(SECRET_B) + "[[backend\n") is False
    assert await watcher.check_once() is False  # read again: same problem, not said again
    os.utime(path)  # touched, still the same problem
    assert await watcher.check_once() is False
    (warning,) = records(addon_log, logging.WARNING)
    assert warning.startswith(f"oauth2: keeping the last good configuration: {path}: invalid TOML")
    assert recorder.applied == []

    another_problem = toml(SECRET_B).replace("client_id", "clientid")  # said
    assert await rewrite(watcher, path, another_problem) is False
    assert "backend 'api': key 'clientid': unknown key" in records(addon_log, logging.WARNING)[1]

    # fixed, even back to what runs: a reload, and said so
    assert await rewrite(watcher, path, toml()) is True
    assert recorder.secrets() == [SECRET_A]
    assert records(addon_log, logging.INFO) == [f"oauth2: reloaded 1 backend(s) from {path}"]

    # broken again after a good one: said again
    assert await rewrite(watcher, path, toml() + "[[backend\n") is False
    assert len(records(addon_log, logging.WARNING)) == 3
    assert_no_secret_in(addon_log.text)


async def test_deleted_file_keeps_the_config_until_it_is_back(
    following, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    path.unlink()
    assert await watcher.check_once() is False
    assert "cannot read the configuration file" in caplog.text
    assert str(path) in caplog.text
    assert await rewrite(watcher, path, toml(SECRET_B)) is True
    assert recorder.secrets() == [SECRET_B]


async def test_refused_by_apply_is_a_warning(
    following, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    watcher, path = following
    recorder.refuse = ValueError("host api.test is listed twice")
    assert await rewrite(watcher, path, toml(SECRET_B)) is False
    assert await watcher.check_once() is False
    (warning,) = records(caplog, logging.WARNING)
    assert f"{path}: host api.test is listed twice" in warning
    recorder.refuse = None
    assert await rewrite(watcher, path, toml(SECRET_B, extra="max_token_age = 60\n")) is True
