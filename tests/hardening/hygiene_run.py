"""The secret hygiene test's run through mitmdump: its configuration (one backend per auth
method), the failure paths of the authorization server, and what the addon wrote where."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
import httpx
from mitmproxy import io as mitmproxy_io
from mitmproxy.http import HTTPFlow

from mitm_oauth2.devservers import KNOBS
from mitm_oauth2.problem import CONTENT_TYPE
from tests.hardening.fault_rig import crowd
from tests.hardening.fault_rig import poll
from tests.hardening.fault_rig import wait_for_lines
from tests.hardening.secret_forms import BEARER_ISSUER
from tests.hardening.secret_forms import BEARER_SUBJECT
from tests.hardening.secret_forms import SDK_ID
from tests.hardening.secret_forms import SDK_SECRET
from tests.hardening.secret_forms import SECRET_BASIC
from tests.hardening.secret_forms import SECRET_DPOP
from tests.hardening.secret_forms import SECRET_EXCHANGE
from tests.hardening.secret_forms import SECRET_HS
from tests.hardening.secret_forms import SECRET_PASSWORD
from tests.hardening.secret_forms import SECRET_PHANTOM
from tests.hardening.secret_forms import SECRET_REFRESH
from tests.hardening.secret_forms import TOKEN_PREFIX
from tests.hardening.secret_forms import USERNAME
from tests.hardening.secret_forms import WORKLOAD_CLIENT
from tests.hardening.secret_forms import Keys
from tests.support.devservers import DevServersProcess
from tests.support.proxies import Proxy

PROBE = "http://commands.probe.invalid"
DEFAULT_KNOBS = {name: default for name, (default, _) in KNOBS.items()}
VERBOSE = (
    *("--set", "termlog_verbosity=debug"),
    *("--set", "flow_detail=4"),
    *("--set", "proxy_debug=true"),
    *("--set", "content_view_lines_cutoff=1000000"),
)
# Each backend's token_timeout: twelve token requests at once through a verbose mitmdump can
# take a second on a loaded machine, and a user's refresh token rotated by a request the proxy
# gave up on is spent.
TOKEN_TIMEOUT = 3
# What the authorization server does wrong in each failure path (knobs of the dev servers).
FAILURES: dict[str, dict[str, Any]] = {
    "invalid_client echoing the credentials": {"status": 400, "echo_auth": True},
    "invalid_client without description": {"status": 400, "body": '{"error":"invalid_client"}'},
    "HTTP 500": {"status": 500},
    "HTML error page": {
        "status": 502,
        "body": "<html><body><h1>502 Bad Gateway</h1></body></html>",
        "content_type": "text/html",
    },
    "timeout": {"delay": TOKEN_TIMEOUT + 2},
}


def config(servers: DevServersProcess, keys: Keys, assertion_file: Path) -> str:
    """One backend per auth method and grant, the DPoP ones (a key file's, a made key), one
    acting for its callers (token exchange), one for a sandboxed SDK (phantom tokens) and two
    acting as a user (its refresh token, its password), each under its own path prefix of the
    dev backend."""
    tables: dict[str, dict[str, Any]] = {
        "basic": {"client_id": "hyg-basic", "client_secret": SECRET_BASIC},
        "post": {
            "client_id": "hyg-post",
            "auth_method": "client_secret_post",
            "client_secret": None,
            "client_secret_file": "post.secret",
        },
        "hs": {
            "client_id": "hyg-hs",
            "auth_method": "client_secret_jwt",
            "client_secret": SECRET_HS,
        },
        "rs": {
            "client_id": "hyg-rs",
            "auth_method": "private_key_jwt",
            "client_secret": None,
            "private_key_file": str(keys.client.private_key),
        },
        "wi": {
            "client_id": WORKLOAD_CLIENT,
            "auth_method": "client_assertion",
            "client_secret": None,
            "client_assertion_file": str(assertion_file),
        },
        "jb": {
            "client_id": None,
            "client_secret": None,
            "grant": "jwt_bearer",
            "private_key_file": str(keys.grant.private_key),
            "assertion_issuer": BEARER_ISSUER,
            "assertion_subject": BEARER_SUBJECT,
        },
        "dpop": {
            "client_id": "hyg-dpop",
            "client_secret": SECRET_DPOP,
            "dpop": True,
            "dpop_key_file": str(keys.dpop),
        },
        "dpopgen": {"client_id": "hyg-dpop", "client_secret": SECRET_DPOP, "dpop": True},
        "tx": {"client_id": "hyg-tx", "client_secret": SECRET_EXCHANGE, "grant": "token_exchange"},
        "ph": {"client_id": "hyg-ph", "client_secret": SECRET_PHANTOM, "phantom": True},
        "rt": {
            "client_id": "hyg-rt",
            "client_secret": SECRET_REFRESH,
            "grant": "refresh_token",
            "refresh_token_file": "user.rt",
        },
        "pw": {
            "client_id": "hyg-pw",
            "client_secret": SECRET_PASSWORD,
            "grant": "password",
            "username": USERNAME,
            "password_file": "user.pw",
        },
    }
    return "\n".join(
        servers.backend_toml(name, path_prefix=f"/{name}", token_timeout=TOKEN_TIMEOUT, **fields)
        for name, fields in tables.items()
    )


BACKENDS = ("basic", "post", "hs", "rs", "wi", "jb", "dpop", "dpopgen", "tx", "ph", "rt", "pw")
ALL_OK = [200] * len(BACKENDS)


class Run:
    """Drives the scenario and keeps what callers were answered."""

    def __init__(self, servers: DevServersProcess, proxy: Proxy) -> None:
        self.servers, self.proxy = servers, proxy
        self.client = proxy.client(timeout=15)
        self.problems: list[bytes] = []
        self.commands: list[bytes] = []
        self.metrics: list[bytes] = []
        self.callers: list[str] = []  # the token-exchange backend's callers' own tokens
        self.phantoms: list[str] = []  # what the sandboxed SDK was given
        self.presented: list[str] = []  # every token a caller sent: those, and made-up ones

    def new_caller(self) -> None:
        """A caller of the token-exchange backend with a token of its own, from the server."""
        self.callers.append(self.servers.fetch_token("hyg-basic", SECRET_BASIC))
        self.presented.append(self.callers[-1])

    def ask_phantom(self) -> None:
        """The sandboxed SDK's token request, with its dummy credentials, through the proxy."""
        form = {"grant_type": "client_credentials"}
        answer = self.client.post(self.servers.token_url, data=form, auth=(SDK_ID, SDK_SECRET))
        assert answer.status_code == 200, answer.text
        self.phantoms.append(answer.json()["access_token"])
        self.presented.append(self.phantoms[-1])

    def get_all(self, path: str = "x") -> list[int]:
        """One request to each backend, all at once; their statuses, in BACKENDS order."""
        urls = {name: f"{self.servers.backend_url}/{name}/{path}" for name in BACKENDS}
        own = {"tx": self.callers[-1], "ph": self.phantoms[-1]}
        headers = {urls[name]: {"Authorization": f"Bearer {token}"} for name, token in own.items()}
        answers = crowd(self.proxy, list(urls.values()), headers=headers)
        for answer in answers:
            self.keep_problem(answer)
        return [answer.status_code for answer in answers]

    def keep_problem(self, answer: httpx.Response) -> None:
        if answer.headers.get("content-type") == CONTENT_TYPE:
            self.problems.append(answer.content)

    def refused_callers(self) -> None:
        """Tokens a caller may not have exchanged or swapped: each answered 401."""
        made_up = f"{TOKEN_PREFIX}-never-issued"
        too_long = TOKEN_PREFIX + "x" * (17 * 1024)
        for backend, token in (
            ("tx", made_up),
            ("tx", too_long),
            ("ph", f"phantom.{made_up}"),
            ("ph", self.callers[-1]),  # a real token, not a phantom
        ):
            self.presented.append(token)
            url = f"{self.servers.backend_url}/{backend}/refused"
            answer = self.client.get(url, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, answer.text
            self.keep_problem(answer)

    def command(self, name: str, *args: str) -> str:
        answer = self.client.get(f"{PROBE}/{name}", params={"arg": list(args)})
        assert answer.status_code == 200, answer.text
        self.commands.append(answer.content)
        return answer.text

    def scrape(self, port: int) -> None:
        with httpx.Client(trust_env=False, timeout=10) as direct:
            answer = direct.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200
        assert b"oauth2_token_fetches_total" in answer.content
        self.metrics.append(answer.content)

    def knobs(self, **knobs: Any) -> None:
        self.servers.configure(**{**DEFAULT_KNOBS, "token_prefix": TOKEN_PREFIX, **knobs})


def replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def scenario(run: Run, metrics_port: int) -> None:
    """Happy path, each failure path, replays after 401s, broken reloads and the commands."""
    run.knobs()
    run.new_caller()
    run.ask_phantom()
    assert run.get_all("happy") == ALL_OK
    run.refused_callers()
    run.scrape(metrics_port)
    for knobs in FAILURES.values():
        run.knobs(**knobs)
        run.command("oauth.purge")  # forgets tokens and failures: the next request fetches
        statuses = dict(zip(BACKENDS, run.get_all("failing"), strict=True))
        assert all(status in (502, 503) for status in statuses.values()), statuses
        json.loads(run.command("oauth.status"))
        run.scrape(metrics_port)
    run.knobs()
    run.command("oauth.refresh")  # backs off no more: renews at once
    poll(lambda: run.get_all("recovered") == ALL_OK or None, "served after the failures")
    run.servers.revoke()  # every held token is now refused: one replay each
    run.new_caller()  # the caller's token too: a backend's 401 for it is the caller's answer
    assert run.get_all("revoked") == ALL_OK
    run.knobs(backend_status=401, backend_challenge='Bearer error="invalid_token"')
    assert run.get_all("rejected") == [401] * len(
        BACKENDS
    )  # the fresh token too: its 401 to the caller
    run.knobs()
    good = run.proxy.config_path.read_text(encoding="utf-8")
    broken = [  # each with a secret where the error is
        good.replace(f'client_secret = "{SECRET_HS}"', f'client_secret = ["{SECRET_HS}"]'),
        good.replace(f'"{SECRET_BASIC}"', f'"{SECRET_BASIC}\x00"'),  # invalid TOML
    ]
    for n, text in enumerate(broken, 1):
        replace(run.proxy.config_path, text)
        wait_for_lines(run.proxy, "oauth2: keeping the last good configuration", n)
        assert run.get_all("broken-config") == ALL_OK
        replace(run.proxy.config_path, good)
        wait_for_lines(run.proxy, rf"oauth2: reloaded {len(BACKENDS)} backend\(s\)", n)
    for name in ("oauth.status", "oauth.refresh", "oauth.purge", "oauth.status"):
        run.command(name)
    run.command("oauth.refresh", "basic", "hs")
    run.command("oauth.purge", "post")
    assert run.get_all("final") == ALL_OK
    run.command("oauth.status")
    run.scrape(metrics_port)


def saved_flows(flows_file: Path, phantoms: list[str]) -> bytes:
    """The saved flows as written, after a check that they are the addon's (its metadata),
    less the body of each phantom token answer: the client's own token response, as it got it
    (there by design, and asserted to be there)."""
    with flows_file.open("rb") as file:
        flows = [f for f in mitmproxy_io.FlowReader(file).stream() if isinstance(f, HTTPFlow)]
    assert any("oauth2" in f.metadata for f in flows)
    assert any(f.comment for f in flows)
    answers = [
        f.response.raw_content or b""
        for f in flows
        if f.response is not None and f.metadata.get("oauth2", {}).get("phantom_grant")
    ]
    assert len(answers) == len(phantoms)
    written = flows_file.read_bytes()
    for body, phantom in zip(answers, phantoms, strict=True):
        assert json.loads(body)["access_token"] == phantom
        written = written.replace(body, b"")
    return written


def har_export(har_file: Path, phantoms: list[str]) -> bytes:
    """The HAR export, parsed and written again less the body of each phantom token answer
    (as in the saved flows)."""
    har = json.loads(har_file.read_bytes())
    answered = []
    for entry in har["log"]["entries"]:
        content = entry["response"]["content"]
        text = content.get("text", "")
        if entry["request"]["method"] == "POST" and text.startswith('{"access_token": "phantom.'):
            answered.append(json.loads(text)["access_token"])
            content["text"] = ""
    assert answered == phantoms
    return json.dumps(har).encode()


@dataclass
class CacheContents:
    keys: bytes  # every key, a line each
    files: dict[str, bytes]  # file name -> raw bytes
    made_keys: list[str]  # the PEM of each DPoP key the proxy made, stored with its token


def cache_contents(cache_dir: Path, scratch: Path) -> CacheContents:
    """Read from a copy opened with diskcache, so the proxy's own files stay untouched."""
    files = {p.name: p.read_bytes() for p in sorted(cache_dir.rglob("*")) if p.is_file()}
    copy = scratch / "cache-copy"
    shutil.copytree(cache_dir, copy)
    with diskcache.Cache(str(copy)) as cache:
        keys = [str(key) for key in cache.iterkeys()]
        values = [cache.get(key) for key in keys if key.startswith("token/")]
    assert values
    records = [json.loads(value) for value in values if value is not None]
    made = [r["dpop_key"]["pem"] for r in records if "dpop_key" in r]
    return CacheContents("\n".join(keys).encode(), files, made)
