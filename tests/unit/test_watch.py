"""The config watcher: a changed TOML or secret file is re-read and applied; a broken one keeps the
last good configuration and is reported once. `check_once` is called directly: no sleeping."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from mitm_oauth2 import watch
from mitm_oauth2.config import Config
from mitm_oauth2.config import ConfigError
from mitm_oauth2.watch import ConfigWatcher

pytestmark = pytest.mark.anyio

SECRET_A = "secret-AAAA"
SECRET_B = "secret-BBBB"  # same length: an in-place rewrite leaves the size as it was


def toml(secret: str = SECRET_A, *, secret_key: str = "client_secret", extra: str = "") -> str:
    return (
        "[[backend]]\n"
        'name = "api"\n'
        'hosts = ["api.test"]\n'
        'token_url = "https://idp.test/token"\n'
        'client_id = "proxy"\n'
        f'{secret_key} = "{secret}"\n'
        f"{extra}"
    )


def replace(path: Path, text: str) -> None:
    """Write as careful tools do: a new file renamed over the old one (new inode)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def age(*paths: Path) -> None:
    """Backdate mtimes out of the racy window, so only a real change makes a re-read."""
    past = time.time_ns() - 60 * 10**9
    for path in paths:
        os.utime(path, ns=(past, past))


class Recorder:
    """The `apply` callback: records what it was given; can be told to refuse."""

    def __init__(self) -> None:
        self.applied: list[Config] = []
        self.refuse: Exception | None = None

    def __call__(self, config: Config) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.applied.append(config)

    def secrets(self) -> list[str]:
        return [c.backends[0].grant.credentials.client_secret.reveal() for c in self.applied]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def following(tmp_path: Path, recorder: Recorder) -> tuple[ConfigWatcher, Path]:
    """A watcher following a good backends.toml, as configure() leaves it."""
    path = tmp_path / "backends.toml"
    path.write_text(toml(), encoding="utf-8")
    watcher = ConfigWatcher(recorder, environ={})
    watcher.follow(watcher.load(path))
    return watcher, path


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


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


async def test_rotated_secret_file_is_picked_up(
    tmp_path: Path, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mitm_oauth2")
    path = tmp_path / "backends.toml"
    secret = tmp_path / "secrets" / "api.secret"
    secret.parent.mkdir()
    secret.write_text(SECRET_A + "\n")
    path.write_text(toml("secrets/api.secret", secret_key="client_secret_file"))
    age(path, secret)
    watcher = ConfigWatcher(recorder, environ={})
    watcher.follow(watcher.load(path))
    assert await watcher.check_once() is False

    secret.write_text(SECRET_B + "\n")  # in place, same size; the TOML does not change
    assert await watcher.check_once() is True
    assert recorder.secrets() == [SECRET_B]

    secret.unlink()
    assert await watcher.check_once() is False
    (warning,) = records(caplog, logging.WARNING)
    assert "backend 'api': key 'client_secret_file': cannot read" in warning
    assert SECRET_A not in caplog.text
    assert SECRET_B not in caplog.text


async def test_secret_file_named_by_a_new_toml_is_watched(following, recorder: Recorder) -> None:
    watcher, path = following
    secret = path.with_name("api.secret")
    secret.write_text(SECRET_B)
    replace(path, toml("api.secret", secret_key="client_secret_file"))
    assert await watcher.check_once() is True
    age(path, secret)
    await watcher.check_once()  # the racy re-read
    secret.write_text(SECRET_A)
    assert await watcher.check_once() is True
    assert recorder.secrets() == [SECRET_B, SECRET_A]


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
    replace(path, toml(SECRET_B))
    assert await watcher.check_once() is False
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


def test_secret_files_are_resolved_next_to_the_toml(tmp_path: Path) -> None:
    text = toml("s/a.secret", secret_key="client_secret_file")
    text += toml("/abs/b.secret", secret_key="client_secret_file").replace('"api"', '"b"')
    text += toml()  # an inline secret: no file
    assert watch.secret_files(text, tmp_path / "x.toml") == [
        tmp_path / "s" / "a.secret",
        Path("/abs/b.secret"),
    ]
    assert watch.secret_files("[[backend", tmp_path / "x.toml") == []
    assert watch.secret_files("backend = 3", tmp_path / "x.toml") == []


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
