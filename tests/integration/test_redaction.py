"""No live token at rest, through the real mitmdump (oauth2_redact, on by default): once a
request has gone upstream, its flow reads `Bearer [redacted <fingerprint>]`, in mitmdump's
dump and in the saved flows; such a saved flow replayed through the proxy gets a fresh token."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mitmproxy import http
from mitmproxy import io

from tests.support.devservers import DevServersProcess
from tests.support.procs import until
from tests.support.proxies import ProxyFactory


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def sent_tokens(devservers: DevServersProcess) -> list[str]:
    return [r["authorization"][0].partition(" ")[2] for r in devservers.backend_requests()]


def test_saved_flows_and_dumps_hold_no_live_token_and_replay_with_a_fresh_one(
    devservers: DevServersProcess, mitmdump: ProxyFactory, tmp_path: Path
) -> None:
    saved = tmp_path / "flows.mitm"
    config = devservers.backend_toml("orders")
    proxy = mitmdump(config, "--set", f"save_stream_file={saved}", "--set", "flow_detail=3")
    with proxy.client() as client:
        assert client.post(f"{devservers.backend_url}/orders", json={"item": 7}).status_code == 200
    proxy.stop()
    (token,) = sent_tokens(devservers)
    redacted = f"Bearer [redacted {fingerprint(token)}]"
    assert token not in proxy.output()
    assert f"Authorization: {redacted}" in proxy.output()  # flow_detail 3 dumps the request
    assert token.encode() not in saved.read_bytes()
    with saved.open("rb") as file:
        (flow,) = [f for f in io.FlowReader(file).stream() if isinstance(f, http.HTTPFlow)]
    assert flow.request.headers["Authorization"] == redacted

    # Replayed through a proxy of its own (another cache, so another token): a fresh token.
    replaying = mitmdump(config, "--set", f"client_replay={saved}", "--set", "keepserving=true")
    until(lambda: len(devservers.backend_requests()) == 2, "the saved flow replayed")
    replayed = devservers.backend_requests()[1]
    assert (replayed["method"], replayed["path"], replayed["ok"]) == ("POST", "/orders", True)
    assert replayed["body"] == '{"item":7}'  # as httpx sent it
    fresh = sent_tokens(devservers)[1]
    assert fresh != token
    assert devservers.token_requests() == 2
    assert fresh not in replaying.output()
