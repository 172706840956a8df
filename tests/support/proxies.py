"""mitmdump with the addon for the tests, always through the shipped `ProxyProcess`: `launch()`
starts one with the tests' options and `ProxyFactory` starts numbered ones for a fixture and
stops them all; `run_to_exit()` is the same start for a proxy that must not come up.

The tests load the script users load from a checkout, addon/oauth2_backend.py (the pytest
plugin's tests cover the packaged one). `Proxy` is `ProxyProcess` plus the httpx clients the
tests send through it (and `get_each`, GETs in turn on one of them).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mitm_oauth2.testing import ProxyNotReady
from mitm_oauth2.testing import ProxyProcess
from tests.support.procs import REPO
from tests.support.procs import subprocess_env

CHECKOUT_SCRIPT = REPO / "addon" / "oauth2_backend.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"

# A test-only script that runs the command a request names: GET http://commands.probe.invalid/NAME
COMMAND_PROBE = Path(__file__).with_name("command_probe.py")


def create_ca(confdir: Path) -> Path:
    """mitmproxy's CA made in `confdir` now: proxies sharing the confdir never race for it."""
    from mitmproxy.certs import CertStore

    CertStore.from_store(confdir, "mitmproxy", 2048)
    return confdir


class Proxy(ProxyProcess):
    """The shipped `ProxyProcess`, with httpx clients that go through it and trust its CA."""

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10)
        return httpx.Client(proxy=self.url, verify=self.ssl_context(), trust_env=False, **kwargs)

    def get_each(self, urls: Iterable[str]) -> list[httpx.Response]:
        """A GET of each of `urls` in turn, on one `client()`: the answers, in order."""
        with self.client() as client:
            return [client.get(url) for url in urls]

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10)
        verify = self.ssl_context()
        return httpx.AsyncClient(proxy=self.url, verify=verify, trust_env=False, **kwargs)


def options(*, upstream_ca: Path | None, lazy: bool = True, mode: str | None = None) -> list[str]:
    """The tests' mitmdump options besides those ProxyProcess sets (confdir, config, cache, -s):
    trust the test CA upstream, connect upstream only when a request goes there, a mode."""
    args: list[str] = []
    if upstream_ca is not None:
        args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    if lazy:
        args += ["--set", "connection_strategy=lazy"]
    if mode is not None:
        args += ["--mode", mode]
    return args


def prepare(
    config_text: str | None,
    *extra_args: str,
    config_path: Path,
    confdir: Path,
    upstream_ca: Path | None,
    cache_dir: Path | None = None,
    mode: str | None = None,
    lazy: bool = True,
    name: str = "mitmdump",
    timeout: float = 30,
    mitmdump: Path = MITMDUMP,
    script: Path | None = CHECKOUT_SCRIPT,
    env: dict[str, str] | None = None,
) -> Proxy:
    """A `Proxy`, not started: `config_text` written to `config_path` (None: the file is used
    as it is, or is missing), whose folder is the
    proxy's working directory and holds its token cache (``cache``) unless `cache_dir` is given;
    the tests' `options()`, then `extra_args`, which override them. `mitmdump`, `script`: as
    ProxyProcess takes them (mitmweb, say); `env`: `subprocess_env()` unless given."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    if config_text is not None:
        config_path.write_text(config_text, encoding="utf-8")
    return Proxy(
        config_path,
        *options(upstream_ca=upstream_ca, lazy=lazy, mode=mode),
        *extra_args,
        confdir=confdir,
        cache_dir=cache_dir or config_path.parent / "cache",
        mitmdump=mitmdump,
        script=script,
        env=env if env is not None else subprocess_env(),
        cwd=config_path.parent,
        timeout=timeout,
        name=name,
    )


def start(proxy: Proxy) -> Proxy:
    """`proxy` started, or a failed test with mitmdump's output when it does not come up."""
    try:
        return proxy.start()
    except ProxyNotReady as e:
        pytest.fail(str(e), pytrace=False)


def launch(config_text: str, *extra_args: str, **settings: Any) -> Proxy:
    """`prepare()` and `start()`: a running proxy, which the caller stops."""
    return start(prepare(config_text, *extra_args, **settings))


def run_to_exit(config_text: str | None, *extra_args: str, **settings: Any) -> tuple[int, str]:
    """For startup-error tests: a `prepare()`d proxy started and waited for until it exits
    (`timeout`, 30 s, for each); (exit code, output). A test fails if it is still running."""
    proxy = prepare(config_text, *extra_args, **settings)
    try:
        proxy.start()
    except ProxyNotReady:
        pass
    else:  # it listens: an error after that must still end it
        assert proxy.proc is not None
        try:
            proxy.proc.wait(proxy.timeout)
        except subprocess.TimeoutExpired:
            proxy.stop()
            pytest.fail(f"mitmdump still running after {proxy.timeout}s:\n{proxy.output()}")
    rc = proxy.stop()
    assert rc is not None
    if rc < 0:  # stopped by ProxyProcess (SIGTERM, SIGKILL): it did not exit by itself
        pytest.fail(f"mitmdump did not exit by itself (exit code {rc}):\n{proxy.output()}")
    return rc, proxy.output()


class ProxyFactory:
    """Starts numbered proxies (``mitmdump #N``) with their files in `directory`: config
    ``backends-N.toml``, token cache ``cache-N`` unless one is given (made if missing);
    `stop()` ends them all.
    Each is added to `report` (a failed test's report shows its output)."""

    def __init__(
        self, directory: Path, *, confdir: Path, upstream_ca: Path, report: list[Any]
    ) -> None:
        self.directory, self.confdir, self.upstream_ca = directory, confdir, upstream_ca
        self._report = report
        self._started: list[Proxy] = []
        self._counter = itertools.count(1)

    def __call__(
        self,
        config_toml_text: str,
        *extra_args: str,
        cache_dir: Path | str | None = None,
        mode: str | None = None,
        upstream_ca: bool = True,
        lazy: bool = True,
        config_path: Path | None = None,
    ) -> Proxy:
        """``upstream_ca`` trusts the test CA upstream, ``lazy`` adds
        ``connection_strategy=lazy``; ``extra_args`` come last, so ``--set`` there overrides.
        ``config_path``: where the config goes instead (files it names beside it)."""
        n = next(self._counter)
        cache = Path(cache_dir) if cache_dir is not None else self.directory / f"cache-{n}"
        cache.mkdir(parents=True, exist_ok=True)
        proxy = prepare(
            config_toml_text,
            *extra_args,
            config_path=config_path or self.directory / f"backends-{n}.toml",
            confdir=self.confdir,
            upstream_ca=self.upstream_ca if upstream_ca else None,
            cache_dir=cache,
            mode=mode,
            lazy=lazy,
            name=f"mitmdump #{n}",
        )
        self._started.append(proxy)
        self._report.append(proxy)
        return start(proxy)

    def stop(self) -> None:
        for proxy in self._started:
            proxy.stop()
