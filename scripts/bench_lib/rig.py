"""What every figure uses: the profile, the load client, one backend process with three ports
(two protected, one open), one dev authorization server, and mitmdumps started on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mitmproxy.certs import CertStore

from .drive import Client
from .drive import require_ok
from .drive import run_job
from .procs import HOST
from .procs import Child
from .procs import IdP
from .procs import Mitmdump
from .procs import Processes
from .procs import cpus
from .procs import pin
from .procs import start_backend
from .settings import Profile


@dataclass
class Rig:
    profile: Profile
    client: Client
    procs: Processes
    workdir: Path
    idp: IdP
    backend: Child
    protected: tuple[int, int]  # two backend ports that want a bearer token
    open_port: int  # a backend port that answers everyone: an unprotected host

    @classmethod
    def start(cls, profile: Profile, client: Client, procs: Processes, workdir: Path) -> Rig:
        backend, ports = start_backend(["protected", "protected", "open"])
        procs.add(backend)
        idp = procs.add(IdP())
        # The CA once, before mitmdumps that start together could each write one.
        CertStore.from_store(workdir / "confdir", "mitmproxy", 2048)
        return cls(profile, client, procs, workdir, idp, backend, (ports[0], ports[1]), ports[2])

    @staticmethod
    def url(port: int) -> str:
        return f"http://{HOST}:{port}"

    def config(self, name: str, port: int, **extra: object) -> str:
        """A [[backend]] table for backend port ``port``, with the IdP's client."""
        return self.idp.backend_toml(name, f"{HOST}:{port}", **extra)

    def mitmdumps(self, *specs: tuple[str, list[int], str | Path | None]) -> list[Mitmdump]:
        """Starts one mitmdump per (name, backend ports, what runs in it), all at once, each
        with a token cache of its own; returns them listening. What runs: the addon with this
        config (TOML text), a script of its own (a Path, e.g. FLOOR_SCRIPT), or None (bare)."""
        started = [
            self.mitmdump(
                name,
                ports,
                None if isinstance(subject, Path) else subject,
                cache=self.workdir / f"cache-{name}",
                script=subject if isinstance(subject, Path) else None,
            )
            for name, ports, subject in specs
        ]
        try:
            return [dump.ready() for dump in started]
        except BaseException:
            self.stop(*started)
            raise

    def mitmdump(
        self,
        name: str,
        ports: list[int],
        config: str | None,
        *extra: str,
        cache: Path,
        script: Path | None = None,
    ) -> Mitmdump:
        """Starts one (call ``ready()``); ``cache`` may be shared with others."""
        targets = [self.url(port) for port in ports]
        return self.procs.add(
            Mitmdump(self.workdir, targets, config, *extra, name=name, cache=cache, script=script)
        )

    def warm(self, *urls: str, tokens: Sequence[str] = ()) -> None:
        """A few requests to each: a token fetched, connections made, before measuring.
        `tokens`: callers' tokens the requests carry in turn."""
        for url in urls:
            job: dict[str, object] = {"mode": "closed", "urls": [url], "connections": 4}
            job |= {"count": 100, "tokens": list(tokens)}
            require_ok(run_job(job)["statuses"], f"warming up {url}")

    @contextmanager
    def one_core(self, *dumps: Mitmdump) -> Iterator[bool]:
        """While inside, ``dumps`` share one CPU and everything else here (this process, the
        load clients it starts, the backend, the IdP) runs on the others: measured at the same
        time on the same core, whatever speed the machine has at a moment it has for all of
        them. Yields False, and pins nothing, where that cannot be done (one CPU, not Linux)."""
        if not hasattr(os, "sched_setaffinity") or len(cpus()) < 2:
            yield False
            return
        every = cpus()
        shared = {min(every)}
        others = every - shared
        helpers = [self.backend.proc.pid, self.idp.proc.pid]
        try:
            os.sched_setaffinity(0, others)  # this thread: the load clients it starts inherit it
            for pid in helpers:
                pin(pid, others)
            for dump in dumps:
                pin(dump.proc.pid, shared)
            yield True
        finally:
            os.sched_setaffinity(0, every)
            for pid in [*helpers, *(dump.proc.pid for dump in dumps)]:
                pin(pid, every)

    def stop(self, *dumps: Mitmdump) -> None:
        for dump in dumps:
            self.procs.stop(dump)
