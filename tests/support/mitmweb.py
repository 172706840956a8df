"""The real mitmweb with the addon, as a child process on 127.0.0.1, and a client for its HTTP API.

mitmweb's API authentication depends on the mitmproxy version:
  < 11.1.2     none: the API answers anyone who can reach it (it is on loopback only here)
  11.1.2 on    a random token, printed at startup in "Web server listening at http://...?token=T";
               sent as the ``token`` query parameter (``web_password`` sets a fixed one)
  12.0.1 on    the same token, also accepted as ``Authorization: Bearer T`` (used here)
The token is read from mitmweb's startup line, so nothing is configured for it.
"""

from __future__ import annotations

import io
import re
import shlex
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from mitmproxy import io as mitmproxy_io
from mitmproxy.http import HTTPFlow
from mitmproxy.version import VERSION
from procs import OutputReader
from procs import popen
from procs import stop_process
from proxies import LISTENING

MITMWEB = Path(sys.executable).parent / "mitmweb"
# 11.0.2: "Web server listening at http://127.0.0.1:8081/"
# 12.x:   "Web server listening at http://127.0.0.1:8081/?token=0123abcd..."
WEB_LISTENING = re.compile(r"Web server listening at (http://\S+)")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# Versions whose API needs the token, and those that take it as a Bearer header.
NEEDS_TOKEN = _version(VERSION) >= (11, 1, 2)
BEARER = _version(VERSION) >= (12, 0, 1)


def free_port() -> int:
    """A port that was free a moment ago (mitmweb's web_port cannot be 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mitmweb:
    """mitmweb with the addon loaded: proxy on a free port, web UI on ``web_port``."""

    def __init__(
        self,
        args: list[str],
        *,
        cwd: Path | None,
        name: str = "mitmweb",
        program: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``program``: what runs mitmweb (default: this environment's mitmweb), given the
        harness's arguments and then ``args``; ``env``: its environment (default: popen's)."""
        self.name = name
        self.web_port = free_port()
        self._env = env
        self.cmd = [
            *(program or [str(MITMWEB)]),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--set",
            "web_host=127.0.0.1",
            "--set",
            f"web_port={self.web_port}",
            "--set",
            "web_open_browser=false",
            *args,
        ]
        self._cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self._reader: OutputReader | None = None
        self.proxy_url = ""
        self.web_url = ""  # as mitmweb printed it, with ?token=... where there is one
        self.token: str | None = None
        self.api: httpx.Client | None = None

    def start(self, timeout: float = 30) -> Mitmweb:
        self.proc = popen(self.cmd, self._cwd, subprocess.STDOUT, self._env)
        assert self.proc.stdout is not None
        self._reader = OutputReader(self.proc.stdout, f"{self.name}-output")
        # Both lines come from the same startup; the order differs between versions.
        web = self._reader.wait_for(WEB_LISTENING, timeout)
        proxy = self._reader.wait_for(LISTENING, timeout) if web else None
        if web is None or proxy is None:
            rc = self.stop()
            pytest.fail(
                f"{self.name} did not start within {timeout}s (exit code {rc}):\n"
                f"$ {shlex.join(self.cmd)}\n{self.output()}",
                pytrace=False,
            )
        self.proxy_url = f"http://127.0.0.1:{proxy.group(1)}"
        self.web_url = web.group(1)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.web_url).query)
        self.token = query.get("token", [None])[0]
        if NEEDS_TOKEN and not self.token:
            self.stop()
            pytest.fail(f"mitmweb {VERSION} printed no API token:\n{self.output()}")
        self.api = self.api_client(authenticated=True)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def api_client(self, *, authenticated: bool) -> httpx.Client:
        """A client for the web API, with the token the way this version takes it."""
        headers: dict[str, str] = {}
        params: dict[str, str] = {}
        if authenticated and self.token:
            if BEARER:
                headers["Authorization"] = f"Bearer {self.token}"
            else:
                params["token"] = self.token
        return httpx.Client(
            base_url=self.base_url, headers=headers, params=params, trust_env=False, timeout=10
        )

    def proxy_client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", 10)
        return httpx.Client(proxy=self.proxy_url, trust_env=False, **kwargs)

    def flows_json(self) -> tuple[str, list[dict[str, Any]]]:
        """``GET /flows``: the flow list as the web UI gets it, raw text and parsed."""
        assert self.api is not None
        response = self.api.get("/flows")
        response.raise_for_status()
        return response.text, list(response.json())

    def flows_dump(self, flow_filter: str | None = None) -> list[HTTPFlow]:
        """``GET /flows/dump``: the flows (those matching ``flow_filter``, a mitmproxy filter
        expression, when given) in mitmproxy's own file format, metadata included (``/flows``
        leaves ``flow.metadata`` out on both versions)."""
        assert self.api is not None
        params = {"filter": flow_filter} if flow_filter is not None else None
        response = self.api.get("/flows/dump", params=params)
        response.raise_for_status()
        flows = list(mitmproxy_io.FlowReader(io.BytesIO(response.content)).stream())
        assert all(isinstance(f, HTTPFlow) for f in flows), flows
        return [f for f in flows if isinstance(f, HTTPFlow)]

    def command(self, name: str, *arguments: str) -> dict[str, Any]:
        """Runs a command the way mitmweb's command bar does, as a browser would: the page
        (``web_url``, with ``?token=`` where the version has one, which sets the login cookie),
        the start of its WebSocket, then ``POST /commands/NAME`` with the XSRF cookie and header.
        Returns mitmweb's answer: ``{"value": ...}`` or ``{"error": "..."}``."""
        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=10) as browser:
            browser.get(self.web_url).raise_for_status()
            # The XSRF cookie: "_xsrf", set by the page on 11.0.2; "_mitmproxy_xsrf", set by
            # /updates (the WebSocket, answered 400 to a plain GET) on 12.x.
            browser.get("/updates")
            (xsrf,) = [value for key, value in browser.cookies.items() if "xsrf" in key]
            answer = browser.post(
                f"/commands/{name}",
                json={"arguments": list(arguments)},
                headers={"X-XSRFToken": xsrf},
            )
        assert answer.status_code == 200, f"POST /commands/{name}: {answer.status_code}"
        result: dict[str, Any] = answer.json()
        return result

    def output(self) -> str:
        return self._reader.text() if self._reader else ""

    def stop(self) -> int | None:
        """SIGTERM, wait 10 s, then kill. Returns the exit code (None if never started)."""
        if self.api is not None:
            self.api.close()
            self.api = None
        if self.proc is None:
            return None
        rc = stop_process(self.proc)
        if self._reader is not None:
            self._reader.join()
        return rc
