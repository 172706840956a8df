"""The 401 replay through the addon's hooks, as mitmproxy calls them."""

from __future__ import annotations

import hashlib

import pytest
from mitmproxy import ctx
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.model.credentials import DpopKey
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.model.token import Token
from tests.unit.broker_fakes import run_hook
from tests.unit.replay_fakes import INVALID
from tests.unit.replay_fakes import answer


async def sent_through(addon: OAuth2Backend, backend_answer: http.Response) -> http.HTTPFlow:
    request = tutils.treq(host="api.test", port=443, scheme=b"https", method=b"PUT")
    f = tflow.tflow(req=request)
    await run_hook(addon.requestheaders(f))
    f.response = backend_answer
    await run_hook(addon.response(f))
    return f


@pytest.mark.anyio
async def test_addon_replays_with_the_fresh_token(wired) -> None:
    addon, broker, playback = wired
    playback.outcomes.append(answer(200, content=b"ok"))
    f = await sent_through(addon, answer(401, INVALID))
    assert f.response is not None
    assert (f.response.status_code, f.response.content) == (200, b"ok")
    (replay,) = playback.started
    assert replay.request.headers["Authorization"] == redacted("tok-2")  # what it carried
    assert replay.metadata["oauth2"]["replay_of"] == f.id
    assert f.metadata["oauth2"]["replayed"] is True
    assert f.metadata["oauth2"]["source"] == "renewed after 401"
    assert f.comment == "renewed after 401 · replayed once: 200 · api"
    # the request's token, the eviction, the fresh token, the replay's (from memory) token
    assert [call for call, _ in broker.calls] == ["token", "invalidate", "token", "token"]


@pytest.mark.anyio
async def test_addon_gives_the_second_401_as_is(wired) -> None:
    addon, _, playback = wired
    playback.outcomes.append(answer(401, 'Bearer error="invalid_token", error_description="2"'))
    f = await sent_through(addon, answer(401, INVALID))
    assert f.response is not None
    assert f.response.headers["WWW-Authenticate"].endswith('"2"')
    assert len(playback.started) == 1  # the replay's own 401 was not replayed


@pytest.mark.anyio
async def test_addon_refuses_when_no_fresh_token_can_be_had(wired) -> None:
    addon, broker, playback = wired
    f = tflow.tflow(req=tutils.treq(host="api.test", port=443, scheme=b"https"))
    await run_hook(addon.requestheaders(f))
    broker.error = TokenError("token endpoint unreachable")
    f.response = answer(401, INVALID)
    await run_hook(addon.response(f))
    assert f.response.status_code == 502
    assert f.response.headers["Content-Type"] == "application/problem+json"
    assert "token endpoint unreachable" in f.response.text
    assert playback.started == []
    # Marked and told like any refusal, not as the token it had before.
    assert f.marked
    assert f.metadata["oauth2"]["error"] == (
        "token rejected (401), no fresh one: token endpoint unreachable"
    )
    assert "token rejected (401), no fresh one: token endpoint unreachable" in f.comment
    assert "left" not in f.comment


@pytest.mark.anyio
async def test_addon_replay_error_hook(wired) -> None:
    addon, _, playback = wired
    playback.outcomes.append("Connection refused")
    f = await sent_through(addon, answer(401))
    assert f.response is not None
    assert f.response.status_code == 401
    assert f.metadata["oauth2"]["replay_error"] == "Connection refused"


@pytest.mark.anyio
@pytest.mark.parametrize("wired", ["retry_on_401 = false"], indirect=True)
async def test_addon_retry_on_401_false(wired) -> None:
    addon, broker, playback = wired
    f = await sent_through(addon, answer(401, INVALID))
    assert f.response is not None
    assert f.response.status_code == 401
    assert playback.started == []
    assert [call for call, _ in broker.calls] == ["token"]


@pytest.mark.anyio
async def test_addon_leaves_other_flows_alone(wired) -> None:
    addon, broker, playback = wired
    other = tflow.tflow(resp=answer(401, INVALID))  # a host without a backend
    await run_hook(addon.requestheaders(other))
    await run_hook(addon.response(other))
    refused = tflow.tflow(resp=answer(401))  # requestheaders answered it itself
    refused.metadata["oauth2"] = {"backend": "api", "error": "token endpoint unreachable"}
    await run_hook(addon.response(refused))
    saved = await sent_through(addon, answer(200))
    saved.live = False
    saved.response = answer(401)
    await run_hook(addon.response(saved))  # a flow loaded from a file
    assert playback.started == []
    assert ("invalidate", "tok-1") not in broker.calls


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("wired", ['scope = "orders:read"'], indirect=True)
async def test_insufficient_scope_is_told_not_replayed(wired, status: int, addon_log) -> None:
    """RFC 6750 §3.1: the token is good, its scope is not enough: no eviction, no renewal, no
    replay; the flow, the status and one log line say what was wanted and what it has."""
    addon, broker, playback = wired
    challenge = 'Bearer realm="orders", error="insufficient_scope", scope="orders:write admin"'
    for _ in range(2):
        f = await sent_through(addon, answer(status, challenge))
        assert f.response is not None
        assert f.response.status_code == status  # the backend's answer, as it was
    assert playback.started == []
    assert [call for call, _ in broker.calls] == ["token", "token"]  # no invalidate
    assert f.metadata["oauth2"]["insufficient_scope"] == {
        "wanted": ["orders:write", "admin"],
        "token_has": ["orders:read"],  # as asked: the stub's token response names none
    }
    assert f.comment == (
        "insufficient scope · wants orders:write admin; the token has orders:read · api"
    )
    counters = broker.counters.of("api")
    assert (counters.scope_refusals, counters.last_scope_refusal) == (
        2,
        "wants orders:write admin; the token has orders:read",
    )
    (line,) = [r.getMessage() for r in addon_log.records if "lack of scope" in r.getMessage()]
    assert line == (
        "backend api: the backend refused the token for lack of scope (wants orders:write "
        "admin; the token has orders:read): add what it wants to `scope` of this backend, if "
        "the authorization server grants it to the client"
    )


@pytest.mark.anyio
async def test_a_403_without_insufficient_scope_is_left_alone(wired) -> None:
    addon, broker, playback = wired
    f = await sent_through(addon, answer(403, 'Bearer error="invalid_request"'))
    assert f.response is not None
    assert f.response.status_code == 403
    assert "insufficient_scope" not in f.metadata["oauth2"]
    assert playback.started == []
    assert [call for call, _ in broker.calls] == ["token"]


def redacted(token: str) -> str:
    return f"Bearer [redacted {hashlib.sha256(token.encode()).hexdigest()[:12]}]"


@pytest.mark.anyio
async def test_the_flow_keeps_no_live_token_once_answered(wired) -> None:
    addon, _, _ = wired
    f = await sent_through(addon, answer(200, content=b"ok"))
    assert f.request.headers["Authorization"] == redacted("tok-1")
    failed = tflow.tflow(req=tutils.treq(host="api.test", port=443, scheme=b"https"))
    await run_hook(addon.requestheaders(failed))
    assert failed.request.headers["Authorization"] == "Bearer tok-1"  # on its way upstream
    failed.error = mflow.Error("connection reset")
    addon.error(failed)
    assert failed.request.headers["Authorization"] == redacted("tok-1")


@pytest.mark.anyio
async def test_a_replayed_flow_and_its_replay_keep_no_live_token(wired) -> None:
    addon, _, playback = wired
    playback.outcomes.append(answer(200, content=b"ok"))
    f = await sent_through(addon, answer(401, INVALID))
    (replay,) = playback.started
    assert f.request.headers["Authorization"] == redacted("tok-1")
    assert replay.request.headers["Authorization"] == redacted("tok-2")


@pytest.mark.anyio
async def test_a_request_the_addon_did_not_touch_is_left_as_it_was(wired) -> None:
    addon, _, _ = wired
    f = tflow.tflow(req=tutils.treq(host="other.test", headers=((b"Authorization", b"Basic x"),)))
    await run_hook(addon.requestheaders(f))
    f.response = answer(200)
    await run_hook(addon.response(f))
    assert f.request.headers["Authorization"] == "Basic x"


@pytest.mark.anyio
async def test_oauth2_redact_false_keeps_the_header_as_sent(wired) -> None:
    addon, _, _ = wired
    ctx.options.update(oauth2_redact=False)
    f = await sent_through(addon, answer(200))
    assert f.request.headers["Authorization"] == "Bearer tok-1"


@pytest.mark.anyio
async def test_a_proof_that_cannot_be_signed_fails_closed(wired) -> None:
    """Never forwarded with the token but without its proof: a 502 problem instead."""
    addon, broker, _ = wired
    broken = DpopKey(Secret("not a PEM"), "ES256", (("kty", "EC"),), "jkt", generated=True)

    async def bound_token(grant) -> Token:
        return Token("tok-dpop", "DPoP", issued_at=0.0, lifetime=3600.0, dpop_key=broken)

    broker.token = bound_token
    f = tflow.tflow(req=tutils.treq(host="api.test", port=443, scheme=b"https"))
    await run_hook(addon.requestheaders(f))
    assert f.response is not None
    assert f.response.status_code == 502
    assert "Authorization" not in f.request.headers
    assert "DPoP" not in f.request.headers


@pytest.mark.anyio
async def test_a_backend_removed_meanwhile_still_leaves_no_live_token(wired) -> None:
    addon, _, _ = wired
    f = tflow.tflow(req=tutils.treq(host="api.test", port=443, scheme=b"https"))
    await run_hook(addon.requestheaders(f))
    addon.by_name = {}  # a reload removed it while the request was on its way
    f.response = answer(200)
    await run_hook(addon.response(f))
    fingerprint = hashlib.sha256(b"tok-1").hexdigest()[:12]
    assert f.request.headers["Authorization"] == f"[redacted {fingerprint}]"
