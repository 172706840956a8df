"""The real mitmweb with the addon, as a child process on 127.0.0.1, and a client for its HTTP API.

mitmweb's API authentication depends on the mitmproxy version:
  < 11.1.2     none: the API answers anyone who can reach it (it is on loopback only here)
  11.1.2 on    a random token, printed at startup in "Web server listening at http://...?token=T";
               sent as the ``token`` query parameter (``web_password`` sets a fixed one)
  12.0.1 on    the same token, also accepted as ``Authorization: Bearer T`` (used here)
The token is read from mitmweb's startup line, so nothing is configured for it. mitmweb takes
mitmdump's arguments, so it runs as the shipped ProxyProcess's program (tests.support.proxies).
"""

from __future__ import annotations

import io
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from mitmproxy import io as mitmproxy_io
from mitmproxy.http import HTTPFlow
from mitmproxy.version import VERSION

from mitm_oauth2.testing import free_port
from tests.support.proxies import CHECKOUT_SCRIPT
from tests.support.proxies import Proxy
from tests.support.proxies import prepare
from tests.support.proxies import start

MITMWEB = Path(sys.executable).parent / "mitmweb"
# 11.0.2: "Web server listening at http://127.0.0.1:8081/"
# 12.x:   "Web server listening at http://127.0.0.1:8081/?token=0123abcd..."
WEB_LISTENING = re.compile(r"Web server listening at (http://\S+)")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# Versions whose API needs the token, and those that take it as a Bearer header.
NEEDS_TOKEN = _version(VERSION) >= (11, 1, 2)
BEARER = _version(VERSION) >= (12, 0, 1)


class Mitmweb:
    """mitmweb with the addon loaded (`proxies.prepare()`'s mitmdump, with mitmweb as its
    program): proxy on a free port, web UI on ``web_port``."""

    def __init__(
        self,
        config_text: str,
        *args: str,
        config_path: Path,
        confdir: Path,
        program: Path = MITMWEB,
        script: Path | None = CHECKOUT_SCRIPT,
        env: dict[str, str] | None = None,
        name: str = "mitmweb",
    ) -> None:
        """``program``: what runs mitmweb (default: this environment's mitmweb), given
        mitmdump's arguments; ``script``: the addon script it loads (None: ``program`` loads it
        itself, as scripts/web does); ``env``: its environment (default: `subprocess_env()`)."""
        self.name = name
        self.web_port = free_port()
        web = ("web_host=127.0.0.1", f"web_port={self.web_port}", "web_open_browser=false")
        self.proxy: Proxy = prepare(
            config_text,
            *(arg for option in web for arg in ("--set", option)),
            *args,
            config_path=config_path,
            confdir=confdir,
            upstream_ca=None,
            mitmdump=program,
            env=env,
            name=name,
            script=script,
        )
        self.proxy_url = ""
        self.web_url = ""  # as mitmweb printed it, with ?token=... where there is one
        self.token: str | None = None
        self.api: httpx.Client | None = None

    def start(self) -> Mitmweb:
        start(self.proxy)  # waits for the proxy's listening line
        # The web server's line comes from the same startup; the order differs between versions.
        web = self.proxy.wait_for_output(WEB_LISTENING, self.proxy.timeout)
        self.proxy_url = self.proxy.url
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
        return self.proxy.client(**kwargs)

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
        return self.proxy.output()

    def stop(self) -> int | None:
        """SIGTERM, wait 10 s, then kill. Returns the exit code (None if never started)."""
        if self.api is not None:
            self.api.close()
            self.api = None
        return self.proxy.stop()
