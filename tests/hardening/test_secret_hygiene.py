"""Secret hygiene: the happy path and the failure paths through the real mitmdump at its most
verbose, then a search of everything it writes for every form of every credential.

Searched: all of mitmdump's output (termlog_verbosity=debug, flow_detail=4, proxy_debug,
no cut-off of bodies), the problem bodies callers got, the saved flows (`save_stream_file`,
whole: every request and response with its headers, the flows' metadata, comments and markers),
the HAR export (`hardump`), the output of oauth.status, oauth.refresh and oauth.purge, the
Prometheus text, and the token cache: its keys and the raw bytes of its SQLite files.

Searched for: the client secrets (basic, post from a file, client_secret_jwt, a DPoP client's,
a token-exchange backend's, a phantom backend's, and those of two backends acting as a user),
the user's password (the password grant's, from a file),
the Basic values, the private keys (private_key_jwt's, the JWT-bearer grant's, a DPoP key file's
and the DPoP key the proxy made, as the cache holds it), any JWT (client assertions, the
JWT-bearer grant's assertions, the platform's assertion that client_assertion reads from a file,
DPoP proofs), the access tokens and the users' refresh tokens (the dev token server issues them
with a recognisable prefix: the backends' tokens, the exchanged ones, the callers' own, the
refresh token a user's sign-in gave and each one it was rotated to) and the phantom tokens a
sandboxed SDK got, each as written and URL-, JSON-, base64- and base64url-encoded. The authorization
server misbehaves on purpose, echoing the credentials it was sent in its error descriptions.

With `oauth2_redact` (the default), a flow's copy of the injected headers reads `[redacted
<fingerprint>]` once the request has gone upstream, and so does a refused request's copy of
the token its caller sent (a token-exchange caller's, a phantom), so mitmproxy's dumps
(flow_detail >= 2), the saved flows and the HAR export show no token. Exceptions, by design,
each asserted to be exactly that:
- proxy_debug's trace of the bytes sent to the backend (`<< SendData(server, b'...')`) shows
  the headers as they went out: the token, and a DPoP backend's proof; its trace of the bytes
  received from a client, the token that client sent (its own, or its phantom);
- the phantom token answer the sandboxed SDK got is its response, in its flow (dumped, saved,
  exported) and in proxy_debug's trace of its sending: mitmproxy has no hook after a response
  is sent, so what the client gets is what the flow keeps (a phantom is good only through this
  proxy, for one backend);
- the cache's files hold the access tokens themselves, and a user's newest refresh token (the
  cache exists to keep them across restarts; 0600 files in a 0700 directory; sealed with
  `oauth2_store_key_env`), and with each token of a key the proxy made, that
  DPoP key (without it the token is useless to the processes sharing the cache). Its keys
  never do, and no other secret or key is stored.
tests/unit/test_store.py checks the cache's modes on the store itself; here they are checked
after real use by mitmdump.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mitm_oauth2.testing import free_port
from tests.hardening.hygiene_run import VERBOSE
from tests.hardening.hygiene_run import CacheContents
from tests.hardening.hygiene_run import Run
from tests.hardening.hygiene_run import cache_contents
from tests.hardening.hygiene_run import config
from tests.hardening.hygiene_run import har_export
from tests.hardening.hygiene_run import saved_flows
from tests.hardening.hygiene_run import scenario
from tests.hardening.launch import Launcher
from tests.hardening.secret_forms import A_PROOF
from tests.hardening.secret_forms import BEARER_ISSUER
from tests.hardening.secret_forms import CLIENTS
from tests.hardening.secret_forms import PHANTOM_ANSWER
from tests.hardening.secret_forms import PLATFORM
from tests.hardening.secret_forms import RECEIVED_FROM_CLIENT
from tests.hardening.secret_forms import REDACTED_HEADER
from tests.hardening.secret_forms import REDACTED_PROOF
from tests.hardening.secret_forms import SDK_ID
from tests.hardening.secret_forms import SDK_SECRET
from tests.hardening.secret_forms import SECRET_POST
from tests.hardening.secret_forms import SENT_TO_SERVER
from tests.hardening.secret_forms import TOKEN_PREFIX
from tests.hardening.secret_forms import USER_PASSWORD
from tests.hardening.secret_forms import WORKLOAD
from tests.hardening.secret_forms import WORKLOAD_CLIENT
from tests.hardening.secret_forms import Credentials
from tests.hardening.secret_forms import Keys
from tests.hardening.secret_forms import credentials
from tests.hardening.secret_forms import encodings
from tests.hardening.secret_forms import platform_assertion
from tests.support.key_material import make_key_pair
from tests.support.proxies import COMMAND_PROBE


@dataclass
class Evidence:
    """What the addon wrote, by where, and the credentials to look for in it."""

    credentials: Credentials
    output: str  # mitmdump's stdout and stderr
    written: dict[str, bytes]  # where -> what the addon wrote there (tokens must not appear)
    cache: CacheContents  # tokens, and the DPoP keys made, stored by design
    cache_dir: Path
    tokens_at_backend: list[str]
    token_requests: str  # what the authorization server was sent, as it logged it
    presented: list[str]  # the tokens callers sent (token exchange's, phantom tokens)


@pytest.fixture(scope="module")
def evidence(launcher: Launcher) -> Evidence:
    directory = launcher.workdir
    (directory / "dpop").mkdir()
    keys = Keys(
        client=make_key_pair(directory, "rsa"),
        grant=make_key_pair(directory, "ec"),
        dpop=make_key_pair(directory / "dpop", "ec").private_key,
    )
    public = keys.client.public_key.read_text()
    federated = {"federated_issuer": PLATFORM, "federated_subject": WORKLOAD}
    federated |= {"federated_audience": WORKLOAD_CLIENT, "federated_key": public}
    clients: dict[str, Any] = {**CLIENTS, "hyg-rs": {"public_key": public}}
    clients[WORKLOAD_CLIENT] = federated
    clients[BEARER_ISSUER] = {"public_key": keys.grant.public_key.read_text()}
    servers = launcher.devservers(clients=clients)
    config_dir = directory / "proxy"
    config_dir.mkdir()
    (config_dir / "post.secret").write_text(SECRET_POST + "\n", encoding="utf-8")
    servers.configure(token_prefix=TOKEN_PREFIX)  # the user's refresh tokens have it too
    (config_dir / "user.rt").write_text(servers.sign_in("hyg-rt") + "\n", encoding="utf-8")
    (config_dir / "user.pw").write_text(USER_PASSWORD + "\n", encoding="utf-8")
    assertion = platform_assertion(keys.client.private_key)
    (config_dir / "platform-token").write_text(assertion, encoding="utf-8")
    flows_file, metrics_port = directory / "flows.mitm", free_port()
    har_file = directory / "flows.har"
    proxy = launcher.proxy(
        config(servers, keys, config_dir / "platform-token"),
        *VERBOSE,
        *("--set", f"save_stream_file={flows_file}"),
        *("--set", f"hardump={har_file}"),
        *("--set", f"oauth2_metrics_port={metrics_port}"),
        *("-s", str(COMMAND_PROBE)),
        config_path=config_dir / "backends.toml",
    )
    run = Run(servers, proxy)
    try:
        scenario(run, metrics_port)
    finally:
        run.client.close()
        proxy.stop()  # flushes the flows file, writes the HAR
    cache = cache_contents(proxy.cache_dir, directory)
    tokens = [
        r["authorization"][0].partition(" ")[2]
        for r in servers.backend_requests()
        if r["authorization"]
    ]
    found = credentials(keys, assertion, cache.made_keys)
    found.tokens |= {t.encode() for t in tokens}
    found.tokens |= {form for phantom in run.phantoms for form in encodings(phantom)}
    written = {
        "problem bodies": b"\n".join(run.problems),
        "saved flows": saved_flows(flows_file, run.phantoms),
        "HAR export": har_export(har_file, run.phantoms),
        "command output": b"\n".join(run.commands),
        "Prometheus metrics": b"\n".join(run.metrics),
        "cache keys": cache.keys,
    }
    output = proxy.output()
    sent = json.dumps(servers.token_log())
    return Evidence(found, output, written, cache, proxy.cache_dir, tokens, sent, run.presented)


@pytest.mark.parametrize(
    "where",
    [
        "problem bodies",
        "saved flows",
        "HAR export",
        "command output",
        "Prometheus metrics",
        "cache keys",
    ],
)
def test_no_credential_in(where: str, evidence: Evidence) -> None:
    written = evidence.written[where]
    assert written.strip()  # something was written there to search
    assert evidence.credentials.hits(written) == []


def test_no_credential_in_the_output_but_mitmproxys_raw_trace_of_the_bytes_sent(
    evidence: Evidence,
) -> None:
    lines = evidence.output.splitlines()
    assert len(lines) > 1000  # at its most verbose
    leaks, traced, received, answers = {}, [], [], []
    for number, line in enumerate(lines, 1):
        hits = evidence.credentials.hits(line.encode())
        if not hits:
            continue
        sent = all(hit.startswith("token") or hit == A_PROOF for hit in hits)
        theirs = evidence.credentials.hits(without(line, evidence.presented).encode()) == []
        if sent and SENT_TO_SERVER.search(line):
            traced.append(line)
        elif theirs and RECEIVED_FROM_CLIENT.search(line):
            received.append(line)
        elif theirs and PHANTOM_ANSWER.search(line):
            answers.append(line)
        else:
            leaks[number] = (line, hits)
    assert leaks == {}
    # The exceptions are real; and the dumps of the requests show the injected headers redacted.
    assert traced
    assert received
    assert answers
    dumped = [line for line in lines if REDACTED_HEADER.match(line)]
    assert any(" DPoP [redacted " in line for line in dumped)
    assert any(" Bearer [redacted " in line for line in dumped)
    assert any(REDACTED_PROOF.match(line) for line in lines)


def test_no_token_a_caller_sent_reached_the_backend(evidence: Evidence) -> None:
    """The exchanged token went in place of each caller's, the real one in place of each
    phantom; the refused ones went nowhere."""
    assert evidence.tokens_at_backend
    assert set(evidence.tokens_at_backend).isdisjoint(evidence.presented)


def test_the_sandboxed_sdks_dummy_credentials_never_reach_the_server(evidence: Evidence) -> None:
    assert SDK_ID not in evidence.token_requests
    assert SDK_SECRET not in evidence.token_requests
    assert '"client_id": "hyg-ph"' in evidence.token_requests  # the proxy's own, instead


def without(line: str, tokens: list[str]) -> str:
    """`line` less each of `tokens`, whole or cut short where mitmproxy's trace ends in `…`."""
    for token in tokens:
        line = line.replace(token, "")

    def cut(start: re.Match[str]) -> str:
        return "…" if any(token.startswith(start[1]) for token in tokens) else start[0]

    return re.sub(r"([\x21-\x7e]+)…", cut, line)


def test_no_secret_in_the_cache_files_which_hold_only_tokens_and_made_dpop_keys(
    evidence: Evidence,
) -> None:
    everything = b"".join(evidence.cache.files.values())
    hits = evidence.credentials.hits(everything, tokens=False)
    assert [hit for hit in hits if not hit.startswith("DPoP key made by the proxy")] == []
    # The search reads these bytes: the tokens the cache exists to keep are found in them, and
    # the one DPoP key made (dpopgen's; dpop's is a key file's, never stored) with its token.
    assert TOKEN_PREFIX.encode() in everything
    assert len(evidence.cache.made_keys) == 1
    assert hits == ["DPoP key made by the proxy #1"]


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
    proof = b"eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2In0.eyJqdGkiOiIxIn0.c2ln"  # typ dpop+jwt
    assert found.hits(b"dpop: " + proof) == [A_PROOF]
