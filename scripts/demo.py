"""The addon end to end on 127.0.0.1, told in a few lines: run through ``scripts/demo``.

Starts the local authorization server and protected backend (``mitm_oauth2.devservers``) in this
process, runs the real mitmdump with the addon and a demo config, sends requests through it with
httpx and checks each outcome. Exit code 0 when every expectation held, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx

from mitm_oauth2.devservers import DEFAULT_CLIENTS
from mitm_oauth2.devservers import DevServers
from mitm_oauth2.testing import ProxyNotReady
from mitm_oauth2.testing import ProxyProcess
from mitm_oauth2.tokens.policy import safety_margin

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = "demo-client"
SECRET = DEFAULT_CLIENTS[CLIENT_ID]  # has ':' '%' '+' '&' and spaces: RFC 6749 §2.3.1 at work
LIFETIME = 4  # expires_in the authorization server grants: short, so renewal shows in seconds
RENEW_AFTER = LIFETIME - safety_margin(LIFETIME)  # the addon's own rule: 4 s - 2 s
SLACK = 0.5  # seconds past a deadline before acting on it
ADDON_LOG = re.compile(r"backend|oauth2", re.IGNORECASE)
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}


class DemoFailed(Exception):
    """An expectation did not hold; the message says which."""


def expect(condition: bool, failure: str) -> None:
    if not condition:
        raise DemoFailed(failure)


def run_steps(servers: DevServers, proxy: ProxyProcess) -> None:
    state, orders = servers.state, f"{servers.backend_url}/orders"

    def count(log: str) -> int:  # "token_request_log" or "backend_requests"
        return len(state.stats()[log])

    print(f"Authorization server  {servers.token_url}  (client {CLIENT_ID}, secret {SECRET!r})")
    print(f"Protected backend     {servers.backend_url}")
    print(f"Proxy (mitmdump)      {proxy.url}")
    print()
    with httpx.Client(trust_env=False, timeout=10) as direct:
        status = direct.get(orders).status_code
    expect(status == 401, f"the backend answered {status} to a request without a token, not 401")
    print(f"1. Without the proxy: GET /orders -> {status} (the backend wants a token)")

    with httpx.Client(proxy=proxy.url, trust_env=False, timeout=15) as client:
        replies = [client.get(orders) for _ in range(3)]
        first_done = time.monotonic()  # the token was requested before this moment
        codes = " ".join(str(r.status_code) for r in replies)
        expect(codes == "200 200 200", f"through the proxy: {codes}, not 200 200 200")
        first_token = replies[0].json()["token_id"]
        same = all(r.json()["token_id"] == first_token for r in replies)
        n = count("token_request_log")
        expect(same and n == 1, f"{n} token requests for 3 proxied requests, not 1")
        # Basic with the odd secret was accepted: the client id and secret were encoded right.
        auth = state.stats()["token_request_log"][0]["auth"]
        expect(auth == "basic", f"the token request used {auth!r}, not HTTP Basic")
        print(
            f"2. Through the proxy: 3 requests -> {codes}; token requests at the "
            "authorization server: 1 (fetched once, then reused)"
        )

        body = json.dumps({"item": "Ärmel", "note": "a & b + c: 100%"}, ensure_ascii=False)
        sent = client.post(orders, content=body, headers={"Content-Type": "application/json"})
        echoed = sent.json().get("body")
        expect(sent.status_code == 200, f"the POST got {sent.status_code}, not 200")
        expect(echoed == body, f"the backend received {echoed!r}, not {body!r}")
        print("3. A POST with a JSON body -> 200; the backend received the body intact")

        # Refresh ahead: the first request past the renewal point is served at once with the
        # current token and starts one renewal in the background; later requests get the new one.
        time.sleep(max(0.0, first_done + RENEW_AFTER + SLACK - time.monotonic()))
        ahead = client.get(orders)
        expect(ahead.status_code == 200, f"at the renewal point: {ahead.status_code}, not 200")
        expect(ahead.json()["token_id"] == first_token, "at the renewal point: not served at once")
        deadline = time.monotonic() + 5
        while count("token_request_log") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the background renewal's token request
        renewed = client.get(orders)
        renewed_done = time.monotonic()
        expect(renewed.status_code == 200, f"after renewal: {renewed.status_code}, not 200")
        new_token = renewed.json()["token_id"] != first_token
        n = count("token_request_log")
        expect(new_token and n == 2, f"{n} token requests after the renewal point, not 2")
        print(
            f"4. {RENEW_AFTER:g} s into the {LIFETIME} s token lifetime (its renewal point): "
            "GET /orders -> 200 at once with the current token, renewed in the background; "
            f"next GET -> {renewed.status_code} with the new token; token requests: 2"
        )

        # Until the current token expires the addon keeps using it when renewal fails; after
        # that it must refuse. So: server down, then wait out the renewed token's lifetime.
        state.configure({"down": True})
        time.sleep(max(0.0, renewed_done + LIFETIME + SLACK - time.monotonic()))
        before = count("backend_requests")
        refused = client.get(orders)
        ctype = refused.headers.get("Content-Type", "")
        expect(refused.status_code == 502, f"IdP down: {refused.status_code}, not 502")
        expect(ctype == "application/problem+json", f"IdP down: Content-Type {ctype!r}")
        expect(count("backend_requests") == before, "IdP down: the backend got the request")
        print(
            f"5. Authorization server down: GET /orders -> 502 {ctype}; "
            "the backend received nothing"
        )
        print(f"   detail: {refused.json().get('detail')}")


def write_config(path: Path, servers: DevServers) -> None:
    # JSON strings are valid TOML basic strings: the secret's odd characters need no care.
    fields = {
        "name": "demo",
        "hosts": [urllib.parse.urlsplit(servers.backend_url).netloc],  # "127.0.0.1:PORT"
        "token_url": servers.token_url,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    path.write_text("\n".join(["[[backend]]", *lines]) + "\n")


def main() -> int:
    servers = DevServers()  # in this process: its knobs and stats are plain calls
    proxy: ProxyProcess | None = None
    # No proxy variables: every byte of the demo stays on 127.0.0.1.
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    failure: str | None = None
    # A fresh cache directory per run: every demo starts cold and fetches its first token.
    with tempfile.TemporaryDirectory(prefix="oauth2-demo-") as tmp:
        settings = {
            "connection_strategy": "lazy",  # no token, no connection to the backend either
            "flow_detail": 0,  # log lines only, no per-flow dumps
        }
        args = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
        try:
            servers.start().state.configure({"expires_in": LIFETIME})
            write_config(Path(tmp, "backends.toml"), servers)
            # The real mitmdump (the venv's) with the script users load, on a free port.
            proxy = ProxyProcess(
                Path(tmp, "backends.toml"),
                *args,
                script=ROOT / "addon" / "oauth2_backend.py",
                confdir=ROOT / "certs",  # the scripts' confdir: mitmproxy's CA lives there
                cache_dir=Path(tmp, "cache"),
                env=env,
                timeout=30,
            )
            proxy.start()
            run_steps(servers, proxy)
        except (DemoFailed, ProxyNotReady) as e:
            failure = str(e)
        except (OSError, httpx.HTTPError, ValueError, KeyError) as e:  # e.g. a reply not JSON
            failure = f"{type(e).__name__}: {e}"
        except KeyboardInterrupt:
            print("\nInterrupted.")
            return 130
        finally:  # on any exit, Ctrl-C included: nothing the demo started outlives it
            if proxy is not None:
                if failure and proxy.returncode is not None:  # often the real cause
                    failure += f" (mitmdump had exited with code {proxy.returncode})"
                proxy.stop()
            servers.stop()
    if proxy is not None:
        print("\nThe addon's log (mitmdump output):")
        lines = proxy.output().splitlines(keepends=True)
        print("".join(f"    {line}" for line in lines if ADDON_LOG.search(line)), end="")
    if failure is not None:
        print(f"\nDemo FAILED: {failure}")
        return 1
    print("\nDemo passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
