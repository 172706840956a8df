"""Secret hygiene: the happy path and the failure paths through the real mitmdump at its most
verbose, then a search of everything the addon writes for every form of every credential.

Searched: all of mitmdump's output (termlog_verbosity=debug, flow_detail=4, proxy_debug,
no cut-off of bodies), the problem bodies callers got, each saved flow's metadata, comment and
marker and the problems the addon answered (`save_stream_file`, read back with mitmproxy.io),
the output of oauth2.status, oauth2.refresh and oauth2.purge, the Prometheus text, and the token
cache: its keys and the raw bytes of its SQLite files.

Searched for: the client secrets (basic, post from a file, client_secret_jwt), the Basic
values, the private_key_jwt key, any JWT (client assertions), and the access tokens (the dev
token server issues them with a recognisable prefix), each as written and URL-, JSON-, base64-
and base64url-encoded. The authorization server misbehaves on purpose, echoing the credentials
it was sent in its error descriptions.

Exceptions, by design, each asserted to be exactly that:
- mitmproxy's own dump of the request headers (flow_detail >= 2) shows the header the addon
  injected, `authorization: Bearer <token>`, as it shows every header; with proxy_debug, its
  trace of the bytes sent to the backend (`<< SendData(server, b'...')`) shows it too;
- the cache's files hold the access tokens themselves (the cache exists to keep them across
  restarts; 0600 files in a 0700 directory). Its keys never do, and no secret is stored.
(Saved flows, `-w`, likewise keep every request header, the injected one included; only what
the addon adds to a flow is searched here.) tests/unit/test_store.py checks the cache's modes on
the store itself; here they are checked after real use by mitmdump.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import diskcache
import httpx
import pytest
from bench import poll
from bench import report_output
from bench import start_proxy
from bench import wait_for_lines
from harness import DevServersProcess
from harness import TlsFiles
from harness import basic_auth
from key_material import make_key_pair
from mitmproxy import io as mitmproxy_io
from mitmproxy.http import HTTPFlow
from mitmweb import free_port
from proxies import Proxy

from mitm_oauth2.devservers import KNOBS
from mitm_oauth2.problem import CONTENT_TYPE

TOKEN_PREFIX = "HYGTOK"
SECRET_BASIC = "HygBasic-s3cr3t: +%&/="
SECRET_POST = "HygPost-s3cr3t/+ %&="
SECRET_HS = "HygHmac-s3cr3t of more than thirty-two bytes: %&+"
CLIENTS = {"hyg-basic": SECRET_BASIC, "hyg-post": SECRET_POST, "hyg-hs": SECRET_HS}
PROBE = "http://commands.probe.invalid"
# A JSON Web Token: a client assertion, whoever signed it.
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
# mitmproxy's dumper printing the request header the addon injected (flow_detail >= 2).
DUMPED_HEADER = re.compile(rf"^\s*authorization: Bearer {TOKEN_PREFIX}[A-Za-z0-9_-]+\s*$", re.I)
# proxy_debug: mitmproxy's trace of the bytes it sends the backend, that header among them.
SENT_TO_SERVER = re.compile(
    rf"<< SendData\(server, b['\"].*\\r\\nauthorization: Bearer {TOKEN_PREFIX}", re.I
)
DEFAULT_KNOBS = {name: default for name, (default, _) in KNOBS.items()}
VERBOSE = (
    *("--set", "termlog_verbosity=debug"),
    *("--set", "flow_detail=4"),
    *("--set", "proxy_debug=true"),
    *("--set", "content_view_lines_cutoff=1000000"),
)
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
    "timeout": {"delay": 2},  # token_timeout is 1 s
}


def encodings(value: str) -> set[bytes]:
    """`value` as written and as the encodings a log, a URL, JSON or a header would use."""
    raw = value.encode()
    forms = {
        value,
        urllib.parse.quote_plus(value),
        urllib.parse.quote(value, safe=""),
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    return {form.encode() for form in forms}


def payload_prefix(client_id: str) -> bytes:
    """The start of a client assertion's base64url payload for `client_id` (PyJWT writes the
    claims compactly, in the order given, `iss` first)."""
    claims = json.dumps({"iss": client_id, "sub": client_id}, separators=(",", ":"))[:-1]
    whole = len(claims) // 3 * 3  # base64 of whole 3-byte groups does not depend on what follows
    return base64.urlsafe_b64encode(claims[:whole].encode())


@dataclass
class Credentials:
    """Every credential of the run, by name, in every form searched for."""

    secrets: dict[str, set[bytes]] = field(default_factory=dict)  # secrets, Basic, keys, JWTs
    tokens: set[bytes] = field(default_factory=set)  # access tokens

    def hits(self, blob: bytes, *, tokens: bool = True) -> list[str]:
        found = [name for name, forms in self.secrets.items() if any(f in blob for f in forms)]
        if JWT.search(blob):
            found.append("a JWT (client assertion)")
        if tokens:
            found += [f"token form {t[:12]!r}" for t in self.tokens if t in blob]
        return found


@dataclass
class Evidence:
    """What the addon wrote, by where, and the credentials to look for in it."""

    credentials: Credentials
    output: str  # mitmdump's stdout and stderr
    written: dict[str, bytes]  # where -> what the addon wrote there (tokens must not appear)
    cache_files: dict[str, bytes]  # file name -> raw bytes (tokens stored by design)
    cache_dir: Path
    tokens_at_backend: list[str]


def credentials(private_key: Path) -> Credentials:
    found = Credentials()
    for client_id, secret in CLIENTS.items():
        found.secrets[f"secret of {client_id}"] = encodings(secret)
    basic = basic_auth("hyg-basic", SECRET_BASIC)
    raw_basic = base64.b64encode(f"hyg-basic:{SECRET_BASIC}".encode()).decode()
    found.secrets["Basic value"] = encodings(basic) | encodings(basic.removeprefix("Basic "))
    found.secrets["Basic value"] |= encodings(raw_basic)
    key_lines = [line for line in private_key.read_text().splitlines() if "-----" not in line]
    found.secrets["private key"] = {line.encode() for line in key_lines[:3]}
    for client_id in ("hyg-hs", "hyg-rs"):
        found.secrets[f"assertion of {client_id}"] = {payload_prefix(client_id)}
    found.tokens = encodings(TOKEN_PREFIX)
    return found


def config(servers: DevServersProcess, private_key: Path) -> str:
    """One backend per auth method, each under its own path prefix of the dev backend."""
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
            "private_key_file": str(private_key),
        },
    }
    return "\n".join(
        servers.backend_toml(name, path_prefix=f"/{name}", token_timeout=1, **fields)
        for name, fields in tables.items()
    )


BACKENDS = ("basic", "post", "hs", "rs")


class Run:
    """Drives the scenario and keeps what callers were answered."""

    def __init__(self, servers: DevServersProcess, proxy: Proxy) -> None:
        self.servers, self.proxy = servers, proxy
        self.client = proxy.client(timeout=15)
        self.problems: list[bytes] = []
        self.commands: list[bytes] = []
        self.metrics: list[bytes] = []

    def get_all(self, path: str = "x") -> list[int]:
        statuses = []
        for name in BACKENDS:
            answer = self.client.post(f"{self.servers.backend_url}/{name}/{path}", content=b"{}")
            if answer.headers.get("content-type") == CONTENT_TYPE:
                self.problems.append(answer.content)
            statuses.append(answer.status_code)
        return statuses

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
    assert run.get_all("happy") == [200] * 4
    run.scrape(metrics_port)
    for knobs in FAILURES.values():
        run.knobs(**knobs)
        run.command("oauth2.purge")  # forgets tokens and failures: the next request fetches
        assert all(status in (502, 503) for status in run.get_all("failing"))
        json.loads(run.command("oauth2.status"))
        run.scrape(metrics_port)
    run.knobs()
    run.command("oauth2.refresh")  # backs off no more: renews at once
    poll(lambda: run.get_all("recovered") == [200] * 4 or None, "served after the failures")
    run.servers.revoke()  # every held token is now refused: one replay each
    assert run.get_all("revoked") == [200] * 4
    run.knobs(backend_status=401, backend_challenge='Bearer error="invalid_token"')
    assert run.get_all("rejected") == [401] * 4  # the fresh token too: its 401 to the caller
    run.knobs()
    good = run.proxy.config_path.read_text(encoding="utf-8")
    broken = [  # each with a secret where the error is
        good.replace(f'client_secret = "{SECRET_HS}"', f'client_secret = ["{SECRET_HS}"]'),
        good.replace(f'"{SECRET_BASIC}"', f'"{SECRET_BASIC}\x00"'),  # invalid TOML
    ]
    for n, text in enumerate(broken, 1):
        replace(run.proxy.config_path, text)
        wait_for_lines(run.proxy, "oauth2: keeping the last good configuration", n)
        assert run.get_all("broken-config") == [200] * 4
        replace(run.proxy.config_path, good)
        wait_for_lines(run.proxy, r"oauth2: reloaded 4 backend\(s\)", n)
    for name in ("oauth2.status", "oauth2.refresh", "oauth2.purge", "oauth2.status"):
        run.command(name)
    run.command("oauth2.refresh", "basic", "hs")
    run.command("oauth2.purge", "post")
    assert run.get_all("final") == [200] * 4
    run.command("oauth2.status")
    run.scrape(metrics_port)


def flow_writings(flows_file: Path) -> bytes:
    """What the addon put on each saved flow: metadata, comment, marker, and its own answers."""
    parts: list[bytes] = []
    with flows_file.open("rb") as file:
        flows = [f for f in mitmproxy_io.FlowReader(file).stream() if isinstance(f, HTTPFlow)]
    assert any("oauth2" in f.metadata for f in flows)
    for flow in flows:
        meta = flow.metadata.get("oauth2")
        parts += [json.dumps(meta).encode(), flow.comment.encode(), flow.marked.encode()]
        if isinstance(meta, dict) and "error" in meta and flow.response is not None:
            parts.append(flow.response.content or b"")
    return b"\n".join(parts)


def cache_contents(cache_dir: Path, scratch: Path) -> tuple[bytes, dict[str, bytes]]:
    """The keys (from a copy opened with diskcache, so the proxy's own files stay untouched)
    and the raw bytes of every file."""
    files = {p.name: p.read_bytes() for p in sorted(cache_dir.rglob("*")) if p.is_file()}
    copy = scratch / "cache-copy"
    shutil.copytree(cache_dir, copy)
    with diskcache.Cache(str(copy)) as cache:
        keys = [str(key) for key in cache.iterkeys()]
    assert any(key.startswith("token/") for key in keys)
    return "\n".join(keys).encode(), files


@pytest.fixture(scope="module")
def evidence(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_ca: TlsFiles,
    mitm_confdir: Path,
) -> Iterator[Evidence]:
    directory = tmp_path_factory.mktemp("hygiene")
    keys = make_key_pair(directory, "rsa")
    clients: dict[str, Any] = {**CLIENTS, "hyg-rs": {"public_key": keys.public_key.read_text()}}
    servers = DevServersProcess(clients=clients, cwd=directory)
    report_output(request, servers)
    proxy: Proxy | None = None
    try:
        config_dir = directory / "proxy"
        config_dir.mkdir()
        (config_dir / "post.secret").write_text(SECRET_POST + "\n", encoding="utf-8")
        flows_file, metrics_port = directory / "flows.mitm", free_port()
        proxy = start_proxy(
            config_dir,
            mitm_confdir,
            tls_ca.ca_cert,
            config(servers, keys.private_key),
            *VERBOSE,
            *("--set", f"save_stream_file={flows_file}"),
            *("--set", f"oauth2_metrics_port={metrics_port}"),
            *("-s", str(Path(__file__).with_name("command_probe.py"))),
            name="mitmdump (hygiene)",
        )
        report_output(request, proxy)
        run = Run(servers, proxy)
        try:
            scenario(run, metrics_port)
        finally:
            run.client.close()
            proxy.stop()  # flushes the flows file
        keys_text, cache_files = cache_contents(proxy.cache_dir, directory)
        tokens = [
            r["authorization"][0].removeprefix("Bearer ")
            for r in servers.backend_requests()
            if r["authorization"]
        ]
        found = credentials(keys.private_key)
        found.tokens |= {t.encode() for t in tokens}
        written = {
            "problem bodies": b"\n".join(run.problems),
            "flow metadata, comments and markers": flow_writings(flows_file),
            "command output": b"\n".join(run.commands),
            "Prometheus metrics": b"\n".join(run.metrics),
            "cache keys": keys_text,
        }
        yield Evidence(found, proxy.output(), written, cache_files, proxy.cache_dir, tokens)
    finally:
        if proxy is not None:
            proxy.stop()
        servers.stop()


@pytest.mark.parametrize(
    "where",
    [
        "problem bodies",
        "flow metadata, comments and markers",
        "command output",
        "Prometheus metrics",
        "cache keys",
    ],
)
def test_no_credential_in(where: str, evidence: Evidence) -> None:
    written = evidence.written[where]
    assert written.strip()  # something was written there to search
    assert evidence.credentials.hits(written) == []


def test_no_credential_in_the_output_but_mitmproxys_own_dump_of_the_injected_header(
    evidence: Evidence,
) -> None:
    lines = evidence.output.splitlines()
    assert len(lines) > 1000  # at its most verbose
    leaks, dumped, traced = {}, [], []
    for number, line in enumerate(lines, 1):
        hits = evidence.credentials.hits(line.encode())
        tokens_only = all(hit.startswith("token") for hit in hits)
        if hits and tokens_only and DUMPED_HEADER.match(line):
            dumped.append(line)
        elif hits and tokens_only and SENT_TO_SERVER.search(line):
            traced.append(line)
        elif hits:
            leaks[number] = (line, hits)
    assert leaks == {}
    # The exceptions are real: every token the backend got is in such lines, and only there.
    assert dumped
    assert traced
    assert all(token in "\n".join(dumped) for token in evidence.tokens_at_backend)


def test_no_secret_in_the_cache_files_which_hold_only_tokens(evidence: Evidence) -> None:
    everything = b"".join(evidence.cache_files.values())
    assert evidence.credentials.hits(everything, tokens=False) == []
    # The search reads these bytes: the tokens the cache exists to keep are found in them.
    assert TOKEN_PREFIX.encode() in everything


def test_cache_directory_0700_and_its_files_0600_after_real_use(evidence: Evidence) -> None:
    assert stat.S_IMODE(evidence.cache_dir.stat().st_mode) == 0o700
    files = [p for p in evidence.cache_dir.rglob("*") if p.is_file()]
    assert files
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == dict.fromkeys(
        (p.name for p in files), 0o600
    )


def test_the_search_finds_every_form_it_looks_for(evidence: Evidence) -> None:
    """The search itself: each credential form is found when it is there."""
    found = evidence.credentials
    for name, forms in found.secrets.items():
        for form in forms:
            assert found.hits(b"x " + form + b" x", tokens=False) != [], name
    for token in evidence.tokens_at_backend:
        assert found.hits(f"Bearer {token}".encode()) != []
    assert found.hits(b"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln") == ["a JWT (client assertion)"]
