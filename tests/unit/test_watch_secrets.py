"""The config watcher and secret files: a rotated secret file is re-read even when the TOML does
not change, and the files to watch are those the current TOML names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mitm_oauth2.config import watch
from mitm_oauth2.config.watch import ConfigWatcher
from mitm_oauth2.model.errors import ConfigError
from tests.unit.watch_helpers import SECRET_A
from tests.unit.watch_helpers import SECRET_B
from tests.unit.watch_helpers import Recorder
from tests.unit.watch_helpers import age
from tests.unit.watch_helpers import assert_no_secret_in
from tests.unit.watch_helpers import records
from tests.unit.watch_helpers import rewrite
from tests.unit.watch_helpers import toml

pytestmark = pytest.mark.anyio


async def test_rotated_secret_file_is_picked_up(
    tmp_path: Path, recorder: Recorder, addon_log: pytest.LogCaptureFixture
) -> None:
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
    (warning,) = records(addon_log, logging.WARNING)
    assert "backend 'api': key 'client_secret_file': cannot read" in warning
    assert_no_secret_in(addon_log.text)


async def test_secret_file_named_by_a_new_toml_is_watched(following, recorder: Recorder) -> None:
    watcher, path = following
    secret = path.with_name("api.secret")
    secret.write_text(SECRET_B)
    assert await rewrite(watcher, path, toml("api.secret", secret_key="client_secret_file")) is True
    age(path, secret)
    await watcher.check_once()  # the racy re-read
    secret.write_text(SECRET_A)
    assert await watcher.check_once() is True
    assert recorder.secrets() == [SECRET_B, SECRET_A]


def test_the_files_a_config_names_are_followed_resolved_next_to_the_toml(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "x.toml"
    relative = path.parent / "s" / "a.secret"
    absolute = tmp_path / "abs" / "b.secret"
    for file in (relative, absolute):
        file.parent.mkdir(parents=True)
        file.write_text(SECRET_A)
    text = toml("s/a.secret", secret_key="client_secret_file")
    text += toml(str(absolute), secret_key="client_secret_file").replace("api", "b")
    text += toml().replace("api", "c")  # an inline secret: no file
    path.write_text(text)
    snapshot = watch.read_config(path, environ={})
    assert [backend.name for backend in snapshot.config.backends] == ["api", "b", "c"]
    assert [file for file, _ in snapshot.stamp] == [path, relative, absolute]


def test_a_missing_file_is_followed_so_that_its_arrival_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(toml("a.secret", secret_key="client_secret_file"))
    snapshot = watch.read_config(path, environ={})
    assert isinstance(snapshot.outcome, ConfigError)
    assert snapshot.stamp[1:] == ((tmp_path / "a.secret", None),)
