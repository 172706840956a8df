"""Faults of the proxy's own process and files, survived by the real mitmdump: SIGKILL while a
token request is in flight (then a restart on the same cache directory), and the configuration
file replaced by a broken one while it runs (the last good configuration keeps serving, and one
warning names the file). `FAULTS` is counted in docs/operations.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mitm_oauth2.devservers import KNOBS
from tests.hardening.fault_rig import assert_served
from tests.hardening.fault_rig import count_lines
from tests.hardening.fault_rig import poll
from tests.hardening.launch import Launcher
from tests.support.devservers import DEMO_CLIENT_SECRET
from tests.support.devservers import DevServersProcess
from tests.support.proxies import Proxy

DEFAULT_KNOBS = {name: default for name, (default, _) in KNOBS.items()}
SECRET_FILE = "api.secret"


@dataclass
class Bench:
    servers: DevServersProcess
    launcher: Launcher  # the module's: starts the kill scenarios' proxies
    proxy: Proxy  # the one whose configuration the file faults break

    def arrived(self) -> int:
        """Token requests that reached the dev token server, answered or not yet."""
        return int(self.servers.stats()["token_requests_arrived"])


@dataclass(frozen=True)
class Fault:
    scenario: Callable[[Bench, str, Fault], None]
    # config faults: writes the broken file(s) into the config's folder, given the good text
    damage: Callable[[Path, str], None] | None = None
    warning: str = ""  # what the warning says after the file's name
    expires_in: int = 3600  # lifetime of the token held when the process is killed


def killed_while_fetching(bench: Bench, name: str, fault: Fault) -> None:
    """SIGKILL while the token request (the first one, or the renewal ahead of expiry) waits
    for the IdP; a restart on the same cache directory answers every request with a valid
    token after exactly one token request, once the dead holder's lock lease (2 s) ran out."""
    toml = bench.servers.backend_toml("api")
    config_path = bench.launcher.workdir / name / "backends.toml"
    proxy = bench.launcher.proxy(toml, "--set", "oauth2_lock_lease=2", config_path=config_path)
    url = f"{bench.servers.backend_url}/{name}"
    stuck: threading.Thread | None = None
    try:
        bench.servers.configure(expires_in=fault.expires_in)
        first = None
        with proxy.client() as client:
            if fault.expires_in < 3600:  # a short token: served until its renewal is under way
                first = assert_served(client.get(f"{url}/warm"))
            bench.servers.configure(delay=10)  # the token request in flight when killed
            before = bench.arrived()
            if fault.expires_in < 3600:

                def renewal_started() -> bool | None:
                    # each request meanwhile is served at once with the first token
                    assert assert_served(client.get(f"{url}/renewing")) == first
                    return bench.arrived() > before or None

                poll(renewal_started, "the renewal ahead of expiry reached the IdP")
            else:
                stuck = threading.Thread(target=request_quietly, args=(proxy, f"{url}/cold"))
                stuck.start()
                poll(lambda: bench.arrived() > before or None, "the token request arrived")
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGKILL)  # dies holding the cache's lock
        proxy.proc.wait(timeout=10)
        bench.servers.configure(delay=0)
        killed_at = bench.arrived()
        proxy.restart()
        with proxy.client(timeout=15) as client:
            # Served all along (the first token while it lasts), until the new one is in use.
            def new_token() -> str | None:
                served = assert_served(client.get(f"{url}/after"))
                return served if served != first else None

            fresh = poll(new_token, "served with a new token after the restart")
            again = [assert_served(client.get(f"{url}/again/{i}")) for i in range(3)]
        assert again == [fresh] * 3
        assert bench.arrived() == killed_at + 1
    finally:
        if stuck is not None:
            stuck.join(timeout=20)
        proxy.stop()


def request_quietly(proxy: Proxy, url: str) -> None:
    with contextlib.suppress(httpx.HTTPError), proxy.client(timeout=20) as client:
        client.get(url)


def config_broken(bench: Bench, name: str, fault: Fault) -> None:
    """The running proxy's file is damaged: one warning names it and what is wrong, requests
    keep their token from the last good configuration, no token request; repaired, it reloads."""
    assert fault.damage is not None
    proxy, path = bench.proxy, bench.proxy.config_path
    good = path.read_text(encoding="utf-8")
    url = f"{bench.servers.backend_url}/{name}"
    warning = "oauth2: keeping the last good configuration: "
    warning += rf"{re.escape(str(path))}: .*{re.escape(fault.warning)}"
    reloaded = rf"oauth2: reloaded 1 backend\(s\) from {re.escape(str(path))}$"
    warned, reloads = count_lines(proxy, warning), count_lines(proxy, reloaded)
    with proxy.client() as client:
        first = assert_served(client.get(f"{url}/before"))
        arrived = bench.arrived()
        fault.damage(path, good)
        poll(lambda: count_lines(proxy, warning) > warned or None, "the warning")
        assert count_lines(proxy, warning) == warned + 1
        during = [assert_served(client.get(f"{url}/during/{i}")) for i in range(3)]
        assert during == [first] * 3
        assert bench.arrived() == arrived
        repair(path, good)
        poll(lambda: count_lines(proxy, reloaded) > reloads or None, "the reload once repaired")
        assert assert_served(client.get(f"{url}/after")) == first
    assert bench.arrived() == arrived  # the same grant: its token is kept
    assert proxy.returncode is None


def replace(path: Path, text: str | bytes) -> None:
    """Renamed over the old file, as editors and configuration management tools do."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.replace(tmp, path)


def repair(path: Path, good: str) -> None:
    replace(path, good)
    (path.parent / SECRET_FILE).write_text(DEMO_CLIENT_SECRET + "\n", encoding="utf-8")


def remove_secret_file(path: Path, good: str) -> None:
    (path.parent / SECRET_FILE).unlink()


FAULTS = [
    pytest.param(Fault(killed_while_fetching), id="sigkill-during-first-token-request"),
    pytest.param(Fault(killed_while_fetching, expires_in=4), id="sigkill-during-refresh-ahead"),
    pytest.param(
        Fault(
            config_broken,
            damage=lambda path, good: replace(path, good + "[[backend\n"),
            warning="invalid TOML",
        ),
        id="config-replaced-invalid-toml",
    ),
    pytest.param(
        Fault(
            config_broken,
            damage=lambda path, good: path.write_text(good[: len(good) // 2], encoding="utf-8"),
            warning="",
        ),
        id="config-half-written-in-place",
    ),
    pytest.param(
        Fault(
            config_broken,
            damage=lambda path, good: path.write_text("", encoding="utf-8"),
            warning="no [[backend]] tables",
        ),
        id="config-truncated-to-empty",
    ),
    pytest.param(
        Fault(
            config_broken,
            damage=lambda path, good: path.unlink(),
            warning="cannot read the configuration file",
        ),
        id="config-deleted",
    ),
    pytest.param(
        Fault(
            config_broken,
            damage=lambda path, good: replace(path, good.encode("utf-16")),
            warning="cannot read the configuration file (UnicodeDecodeError)",
        ),
        id="config-replaced-not-utf8",
    ),
    pytest.param(
        Fault(config_broken, damage=remove_secret_file, warning=f"{SECRET_FILE}"),
        id="config-secret-file-deleted",
    ),
]


@pytest.fixture(scope="module")
def bench(launcher: Launcher) -> Bench:
    servers = launcher.devservers()
    config_dir = launcher.workdir / "config-faults"
    config_dir.mkdir()
    (config_dir / SECRET_FILE).write_text(DEMO_CLIENT_SECRET + "\n", encoding="utf-8")
    toml = servers.backend_toml("api", client_secret=None, client_secret_file=SECRET_FILE)
    debug = ("--set", "termlog_verbosity=debug")
    proxy = launcher.proxy(toml, *debug, config_path=config_dir / "backends.toml")
    return Bench(servers, launcher, proxy)


@pytest.mark.parametrize("fault", FAULTS)
def test_requests_are_answered_correctly_after(
    fault: Fault, bench: Bench, request: pytest.FixtureRequest
) -> None:
    try:
        fault.scenario(bench, request.node.callspec.id, fault)
    finally:
        bench.servers.configure(**DEFAULT_KNOBS)
