"""The screenshot of mitmweb showing annotated flows, in README.md and docs/operations.md; run
through ``scripts/screenshot``.

Starts the local authorization server and backend (``python -m mitm_oauth2.devservers``) and the
real mitmweb with the addon and a demo config, all on 127.0.0.1; sends three requests through it
(a token fetched, the token from the cache, and one refused because the token endpoint is down),
then has Debian's headless Chromium (``/usr/bin/chromium``) photograph mitmweb's UI with one
flow's Comment tab open (``--select``). Not part of the tests: run it by hand and commit the PNG.
The picture shows the mitmproxy version of the interpreter running this (``.venv``'s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx

from mitm_oauth2.devservers import DEFAULT_CLIENTS
from mitm_oauth2.testing import OutputReader
from mitm_oauth2.testing import free_port
from mitm_oauth2.testing import stop_process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # unresolved: the venv's python is a symlink
DEFAULT_OUT = ROOT / "scripts" / "screenshots" / "mitmweb-flow.png"
CLIENT_ID = "demo-client"
WEB_LISTENING = re.compile(r"Web server listening at (http://\S+)")
PROXY_LISTENING = re.compile(r"listening at .*:(\d+)\.?\s*$")
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}
# mitmweb's flow list columns: a few of the default ones, and the comment with the token story.
COLUMNS = ["icon", "path", "method", "status", "comment"]
AGE = 2  # seconds between the first and the second request


class Child:
    """A child process; its output is collected by the package's OutputReader."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
        )
        assert self.proc.stdout is not None
        self._output = OutputReader(self.proc.stdout, name)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        match = self._output.wait_for(pattern, timeout)
        if match is None:
            output = self._output.text().strip() or "(no output)"
            raise SystemExit(f"{self.name}: no {pattern.pattern!r} in:\n{output}")
        return match

    def stop(self) -> None:
        stop_process(self.proc)
        self._output.join()


def write_config(path: Path, token_url: str, port: str) -> None:
    backends = [
        {"name": "orders", "hosts": [f"127.0.0.1:{port}"], "scope": "orders.read"},
        # The same server under another name and scope: a grant of its own, fetched only after
        # the token endpoint went down, so its request is refused.
        {"name": "inventory", "hosts": [f"localhost:{port}"], "scope": "inventory.read"},
    ]
    common = {
        "token_url": token_url,
        "client_id": CLIENT_ID,
        "client_secret": DEFAULT_CLIENTS[CLIENT_ID],
    }
    tables = []
    for backend in backends:
        fields = {**backend, **common}  # JSON strings and lists are valid TOML values
        tables.append(
            "[[backend]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
        )
    path.write_text("\n".join(tables), encoding="utf-8")


def screenshot(chromium: str, url: str, out: Path, tmp: Path, env: dict[str, str]) -> None:
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp))
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
        # Let the UI load its flows over the API and render them before the picture is taken.
        "--virtual-time-budget=5000",
        f"--screenshot={out}",
        url,
    ]
    out.unlink(missing_ok=True)
    done = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 or not out.is_file():
        raise SystemExit(f"chromium failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"PNG to write (default {DEFAULT_OUT.relative_to(ROOT)})",
    )
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary")
    parser.add_argument(
        "--select",
        choices=["fetched", "cache", "refused"],
        default="cache",
        help="the flow whose Comment tab is open (default: cache)",
    )
    args = parser.parse_args()
    if not shutil.which(args.chromium):
        print(f"{args.chromium} not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="oauth2-screenshot-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            servers = Child("devservers", [sys.executable, "-m", "mitm_oauth2.devservers"], env)
            children.append(servers)
            urls = json.loads(servers.wait_for(re.compile(r"^\{.*\}$")).group(0))
            port = urllib.parse.urlsplit(urls["backend_url"]).port
            write_config(tmp / "backends.toml", urls["token_url"], str(port))
            settings = {
                "confdir": tmp / "confdir",  # a throwaway CA: only plain HTTP here
                "oauth2_config": tmp / "backends.toml",
                "oauth2_cache_dir": tmp / "cache",
                "connection_strategy": "lazy",
                "web_host": "127.0.0.1",
                "web_port": free_port(),
                "web_open_browser": "false",
            }
            sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
            sets += [a for column in COLUMNS for a in ("--set", f"web_columns={column}")]
            web = Child(
                "mitmweb",
                [
                    str(BIN / "mitmweb"),
                    # A port picked here rather than 0: the UI's status bar shows the option.
                    *("--listen-host", "127.0.0.1", "--listen-port", str(free_port())),
                    *sets,
                    *("-s", str(ROOT / "addon" / "oauth2_backend.py")),
                ],
                env,
            )
            children.append(web)
            web_url = web.wait_for(WEB_LISTENING).group(1)  # with ?token=... on 11.1.2+
            proxy = f"http://127.0.0.1:{web.wait_for(PROXY_LISTENING).group(1)}"

            paths = {"fetched": "/orders/7", "cache": "/orders/8", "refused": "/stock/3"}
            with httpx.Client(proxy=proxy, trust_env=False, timeout=15) as client:
                codes = [client.get(f"{urls['backend_url']}{paths['fetched']}").status_code]
                time.sleep(AGE)  # so the cached token's age shows
                codes.append(client.get(f"{urls['backend_url']}{paths['cache']}").status_code)
                httpx.post(
                    f"{urls['admin_url']}/config", json={"down": True}, trust_env=False
                ).raise_for_status()
                codes.append(client.get(f"http://localhost:{port}{paths['refused']}").status_code)
            if codes != [200, 200, 502]:
                raise SystemExit(f"unexpected answers through mitmweb: {codes}")

            token = urllib.parse.parse_qs(urllib.parse.urlsplit(web_url).query).get("token")
            api = httpx.get(
                urllib.parse.urljoin(web_url, "/flows"),
                params={"token": token[0]} if token else None,
                trust_env=False,
                timeout=10,
            )
            api.raise_for_status()
            flows = {f["request"]["path"]: f for f in api.json()}
            for name, path in paths.items():
                print(f"{name:8} {path:10} {flows[path]['marked'] or ' '} {flows[path]['comment']}")
            selected = flows[paths[args.select]]["id"]
            url = f"{web_url}#/flows/{selected}/comment"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            screenshot(args.chromium, url, args.out, tmp, env)
        finally:
            for child in reversed(children):
                child.stop()
    print(f"Wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
