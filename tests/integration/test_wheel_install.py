"""The built wheel in a fresh environment: mitmdump loads the installed addon, no checkout needed.

Network stays on loopback: the wheel is built without build isolation and installed without its
dependencies; the fresh environment borrows mitmproxy and the rest from this one through a .pth
file (which, unlike this environment's site directory, does not carry the editable install).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import httpx

from tests.support.devservers import DevServersProcess
from tests.support.procs import Child
from tests.support.procs import subprocess_env

REPO = Path(__file__).resolve().parents[2]


def fresh_env() -> dict[str, str]:
    """The tests' environment without PYTHONPATH, which points at this checkout's addon/."""
    env = subprocess_env()
    env.pop("PYTHONPATH", None)
    return env


def run(*cmd: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=fresh_env(), cwd=cwd, check=False
    )
    assert done.returncode == 0, f"$ {' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_runs_in_a_fresh_environment(
    tmp_path: Path, devservers: DevServersProcess, mitm_confdir: Path
) -> None:
    dist = tmp_path / "dist"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(dist),
        str(REPO),
    )
    (wheel,) = dist.glob("mitmproxy_oauth2_backend-*.whl")
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    site = Path(
        run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    (site / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "--target",
        str(site),
        str(wheel),
    )
    script = run(
        str(python), "-c", "import mitm_oauth2.testing as t; print(t.ADDON_SCRIPT)"
    ).strip()
    assert script.startswith(str(site)), script  # the installed copy, not this checkout
    config = tmp_path / "backends.toml"
    config.write_text(devservers.backend_toml("orders"))
    proxy = Child(
        "mitmdump (installed wheel)",
        [
            str(python), "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()",
            "--listen-host", "127.0.0.1", "--listen-port", "0",
            "--set", f"confdir={mitm_confdir}", "--set", f"oauth2_config={config}",
            "--set", f"oauth2_cache_dir={tmp_path / 'cache'}", "-s", script,
        ],
        ready=r"proxy listening at .*:(\d+)",
        timeout=60,
        env=fresh_env(),
    )  # fmt: skip
    try:
        assert proxy.ready_match is not None
        port = int(proxy.ready_match.group(1))
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False, timeout=10) as client:
            assert client.get(f"{devservers.backend_url}/orders").status_code == 200
        assert devservers.token_requests() == 1
    finally:
        proxy.stop()
