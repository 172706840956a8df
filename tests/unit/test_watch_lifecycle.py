"""The config watcher's life: what it follows, what load() raises, a check overtaken by
configure(), and the polling task (errors survived, started once, stopped)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mitm_oauth2.config.file import Config
from mitm_oauth2.config.watch import ConfigWatcher
from mitm_oauth2.model.errors import ConfigError
from tests.unit.watch_helpers import SECRET_B
from tests.unit.watch_helpers import Recorder
from tests.unit.watch_helpers import replace
from tests.unit.watch_helpers import rewrite
from tests.unit.watch_helpers import toml

pytestmark = pytest.mark.anyio


async def test_reading_for_an_older_configuration_is_dropped(
    following, recorder: Recorder, tmp_path: Path
) -> None:
    """configure() switched files while a check was reading in its thread: configure wins."""
    watcher, path = following
    replace(path, toml(SECRET_B))
    check = asyncio.ensure_future(watcher.check_once())
    await asyncio.sleep(0)  # the check is now waiting for its thread
    other = tmp_path / "other.toml"
    other.write_text(toml())
    watcher.follow(watcher.load(other))
    assert await check is False
    assert recorder.applied == []


async def test_nothing_followed_nothing_checked(following, recorder: Recorder) -> None:
    watcher, path = following
    watcher.follow(None)
    assert await rewrite(watcher, path, toml(SECRET_B)) is False
    assert not watcher.is_current(path)


def test_is_current(following) -> None:
    watcher, path = following
    assert watcher.is_current(path)
    assert not watcher.is_current(path.with_name("other.toml"))
    replace(path, toml(SECRET_B))
    assert not watcher.is_current(path)


def test_load_raises_the_config_error(tmp_path: Path, recorder: Recorder) -> None:
    path = tmp_path / "backends.toml"
    path.write_text(toml().replace('name = "api"', 'name = "a b"'))
    with pytest.raises(ConfigError, match="key 'name'"):
        ConfigWatcher(recorder).load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        ConfigWatcher(recorder).load(tmp_path / "missing.toml")


async def test_polling_applies_changes_and_stops(
    following, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    _, path = following
    failed, applied = asyncio.Event(), asyncio.Event()

    def apply(config: Config) -> None:
        if not failed.is_set():  # an unexpected bug in apply must not end the watching
            failed.set()
            raise RuntimeError("boom")
        recorder(config)
        applied.set()

    watcher = ConfigWatcher(apply, interval=0.01, environ={})
    watcher.follow(watcher.load(path))
    watcher.start()
    watcher.start()  # idempotent: still one task
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "oauth2-config-watcher"]
    assert len(tasks) == 1
    replace(path, toml(SECRET_B))
    await asyncio.wait_for(failed.wait(), 5)
    replace(path, toml(SECRET_B, extra="max_token_age = 60\n"))
    await asyncio.wait_for(applied.wait(), 5)
    assert "checking the configuration failed: RuntimeError('boom')" in caplog.text
    watcher.stop()
    await asyncio.wait(tasks, timeout=5)
    assert tasks[0].cancelled()
    watcher.stop()  # twice is fine
