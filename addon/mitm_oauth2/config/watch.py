"""Follows the configuration file while the proxy runs: a changed file is re-read and applied.

mitmproxy re-runs `configure` only when an option changes; editing the TOML file (or rotating a
`client_secret_file`) changes no option, so the addon polls the files' stat results instead.
A file that fails to parse never replaces a working configuration: the last good one keeps
serving, and the problem is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..model.errors import ConfigError
from .file import Config
from .file import parse_config

logger = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
# Timestamps are coarse (a kernel tick, 2 s on FAT): a same-size write within that window of our
# stat leaves the stat unchanged. Such "racy" stamps are re-read once more, as git does.
_RACY_NS = 2_000_000_000

# What stat says about one file: device, inode, size, mtime and ctime (ns); None if missing.
FileState = tuple[int, int, int, int, int] | None
Stamp = tuple[tuple[Path, FileState], ...]


@dataclass(frozen=True)
class Snapshot:
    """One reading of the configuration: the stamp of every file read, then what they said."""

    path: Path
    stamp: Stamp
    taken_ns: int
    outcome: Config | ConfigError

    @property
    def config(self) -> Config:
        """The configuration read; raises its ConfigError when the files did not make one."""
        if isinstance(self.outcome, ConfigError):
            raise self.outcome
        return self.outcome

    @property
    def racy(self) -> bool:
        """A file changed so shortly before the reading that its stat may not show the next
        change (see _RACY_NS): read again on the next check."""
        return any(
            state is not None and state[3] >= self.taken_ns - _RACY_NS for _, state in self.stamp
        )


def read_config(path: Path, environ: Mapping[str, str] | None = None) -> Snapshot:
    """Reads the TOML file and the secret files it names. Blocking; never raises ConfigError.

    Each file is stat'ed before it is read, so a write that lands after the stat changes the
    stat on the next check and is not missed.
    """
    taken_ns = time.time_ns()
    state = file_state(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        error = ConfigError(f"{path}: cannot read the configuration file ({reason})")
        return Snapshot(path, ((path, state),), taken_ns, error)
    # The files it names, as the parser meets them (up to an error: one that a change of
    # those files can fix comes from a file already named).
    stamp = [(path, state)]
    try:
        config: Config | ConfigError = parse_config(
            text,
            str(path),
            os.environ if environ is None else environ,
            lambda file: stamp.append((file, file_state(file))),
        )
    except ConfigError as e:
        config = e
    return Snapshot(path, tuple(stamp), taken_ns, config)


def file_state(path: Path) -> FileState:
    try:
        st = os.stat(path)  # follows symlinks: a swapped Kubernetes ..data link shows up
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def restat(stamp: Stamp) -> Stamp:
    return tuple((file, file_state(file)) for file, _ in stamp)


class ConfigWatcher:
    """Re-reads the followed configuration when one of its files changes, and applies it.

    `apply` installs a new configuration; it may raise ConfigError or ValueError to refuse it
    (it must then leave the running state untouched). `check_once` does one check (tests
    call it directly); `start` runs it every `interval` seconds on the running loop.
    """

    def __init__(
        self,
        apply: Callable[[Config], None],
        *,
        interval: float = POLL_INTERVAL,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._apply = apply
        self.interval = interval
        self._environ = environ
        self._seen: Snapshot | None = None  # the last reading, applied or not
        self._current: Config | None = None  # the configuration in use
        self._broken: str | None = None  # the error last warned about, until a good reading
        self._generation = 0
        self._task: asyncio.Task[None] | None = None

    def load(self, path: Path) -> Snapshot:
        """Reads `path` for configure(); raises ConfigError. Nothing is followed until `follow`."""
        snapshot = read_config(path, self._environ)
        if isinstance(snapshot.outcome, ConfigError):
            raise snapshot.outcome
        return snapshot

    def follow(self, snapshot: Snapshot | None) -> None:
        """configure() applied `snapshot` (None: no configuration): watch its files from now on."""
        self._seen = snapshot
        self._current = None if snapshot is None else snapshot.config
        self._broken = None
        # A check running in a thread right now read the files for the previous configuration.
        self._generation += 1

    def is_current(self, path: Path) -> bool:
        """Whether `path` is followed and its files did not change since they were last read."""
        seen = self._seen
        return seen is not None and seen.path == path and restat(seen.stamp) == seen.stamp

    async def check_once(self) -> bool:
        """Re-reads the configuration if its files changed; True if a new one was applied."""
        seen = self._seen
        if seen is None:
            return False
        # Stat'ing the few files a configuration names takes microseconds: done on the loop, as
        # mitmproxy's script addon stats its scripts every second. Handing that to a thread
        # each second would cost the proxy more (the GIL passed back and forth) than it saves.
        if not seen.racy and restat(seen.stamp) == seen.stamp:
            return False
        generation = self._generation
        # Reading the files, parsing and resolving secrets may take longer: in a thread.
        snapshot = await asyncio.to_thread(read_config, seen.path, self._environ)
        if generation != self._generation:
            return False
        return self._settle(snapshot)

    def _settle(self, snapshot: Snapshot) -> bool:
        self._seen = snapshot
        outcome = snapshot.outcome
        if isinstance(outcome, Config):
            if outcome == self._current and self._broken is None:
                logger.debug("oauth2: re-read %s, configuration unchanged", snapshot.path)
                return False
            try:
                self._apply(outcome)
            except ConfigError as e:
                outcome = e
            except ValueError as e:
                outcome = ConfigError(f"{snapshot.path}: {e}")
            else:
                self._current, self._broken = outcome, None
                count = len(outcome.backends)
                logger.info("oauth2: reloaded %d backend(s) from %s", count, snapshot.path)
                return True
        message = str(outcome)
        if message == self._broken:  # same problem as last time: said once already
            logger.debug("oauth2: configuration still broken: %s", message)
        else:
            self._broken = message
            logger.warning("oauth2: keeping the last good configuration: %s", message)
        return False

    def start(self) -> None:
        """Starts polling on the running event loop (from the sync `running` hook)."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(
            self._poll(), name="oauth2-config-watcher"
        )

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _poll(self) -> None:
        failure: str | None = None
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except Exception as e:  # a bug must not end the watching, nor repeat every second
                if repr(e) != failure:
                    logger.warning("oauth2: checking the configuration failed: %r", e)
                failure = repr(e)
            else:
                failure = None
