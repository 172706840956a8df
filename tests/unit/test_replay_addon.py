"""The 401 replay through the addon's hooks, as mitmproxy calls them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2 import addon as addon_module
from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.replay import Replays
from tests.unit.broker_fakes import run_hook
from tests.unit.replay_fakes import INVALID
from tests.unit.replay_fakes import Playback
from tests.unit.replay_fakes import StubBroker
from tests.unit.replay_fakes import answer

CONFIG = """
[[backend]]
name = "api"
hosts = ["api.test"]
token_url = "https://idp.test/oauth/token"
client_id = "proxy"
client_secret = "s3cr3t"
{extra}
"""


@pytest.fixture
def wired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """An addon configured for api.test with a stub broker, and a fake client playback that
    runs each copy through the addon's hooks the way the proxy would."""
    broker = StubBroker()
    monkeypatch.setattr(addon_module, "open_broker", lambda store, lock_lease: broker)
    extra = getattr(request, "param", "")
    path = tmp_path / "backends.toml"
    path.write_text(CONFIG.format(extra=extra), encoding="utf-8")
    addon = OAuth2Backend()
    playback = Playback()
    addon.replays = Replays(start=playback, timeout=5)

    async def through_the_proxy(replay: http.HTTPFlow, outcome: http.Response | str) -> None:
        await run_hook(addon.requestheaders(replay))
        if isinstance(outcome, str):
            replay.error = mflow.Error(outcome)
            addon.error(replay)
        else:
            replay.response = outcome
            await run_hook(addon.response(replay))

    playback.finish = through_the_proxy
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "c"))
        yield addon, broker, playback


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
    assert replay.request.headers["Authorization"] == "Bearer tok-2"
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
