"""Helpers for the config watcher tests: backends.toml text, careful and backdated writes (and one
followed by the watcher's look), an `apply` callback that records, and the log's records. The
`recorder` and `following` fixtures are in conftest.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mitm_oauth2.config.file import Config
from mitm_oauth2.config.watch import ConfigWatcher

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


async def rewrite(watcher: ConfigWatcher, path: Path, text: str) -> bool:
    """`text` written over `path` as careful tools do, then the watcher's next look: whether it
    applied a configuration."""
    replace(path, text)
    return await watcher.check_once()


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


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def assert_no_secret_in(text: str) -> None:
    """Neither of the tests' secrets is in `text` (a log, say)."""
    assert SECRET_A not in text
    assert SECRET_B not in text
