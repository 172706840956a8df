"""Replays: how a replay of a rejected request is started and settled, and how it can fail."""

from __future__ import annotations

import json

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.addons.clientplayback import ClientPlayback
from mitmproxy.test import taddons
from mitmproxy.test import tflow

from mitm_oauth2 import replay as replay_module
from mitm_oauth2.config.backend import BackendConfig
from mitm_oauth2.model.errors import ReplayError
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.replay import PASSED
from mitm_oauth2.replay import Outcome
from mitm_oauth2.replay import Replays
from tests.unit.broker_fakes import FakeClock
from tests.unit.replay_fakes import INVALID
from tests.unit.replay_fakes import Playback
from tests.unit.replay_fakes import StubBroker
from tests.unit.replay_fakes import answer
from tests.unit.replay_fakes import rejected_flow
from tests.unit.replay_fakes import replays_with
from tests.unit.replay_fakes import respond


@pytest.fixture
def backend(make_grant) -> BackendConfig:
    return BackendConfig(name="api", hosts=(), grant=make_grant())


@pytest.mark.anyio
async def test_replay_gives_the_caller_the_replayed_answer(backend: BackendConfig) -> None:
    broker, playback = StubBroker(), Playback(answer(200, content=b"accepted"))
    f = rejected_flow(INVALID)
    await respond(replays_with(playback), f, backend, broker)
    assert broker.calls == [("invalidate", "tok-1"), ("token", None)]
    (replay,) = playback.started
    assert replay.id != f.id
    for attr in ("method", "url", "http_version", "raw_content"):
        assert getattr(replay.request, attr) == getattr(f.request, attr), attr
    sent_again = [(k, v) for k, v in replay.request.headers.items() if k != "Authorization"]
    assert sent_again == [(k, v) for k, v in f.request.headers.items() if k != "Authorization"]
    assert replay.request.headers["Authorization"] == "Bearer tok-2"  # the fresh token
    # Handed over without the rejected token: clientplayback's backup of it keeps none.
    assert "Authorization" not in playback.handed[0]
    assert f.response is not None
    assert (f.response.status_code, f.response.content) == (200, b"accepted")
    assert f.metadata["oauth2"] == {
        "backend": "api",
        "header": "Authorization",
        "replayed": True,
        "source": "renewed after 401",
    }
    assert replay.metadata["oauth2"]["replay_of"] == f.id
    for flow in (f, replay):  # saved with the flow: JSON-safe, and no token in it
        assert "tok-" not in json.dumps(flow.metadata)


@pytest.mark.anyio
async def test_second_401_goes_to_the_caller_and_that_token_is_not_evicted_again(
    backend: BackendConfig,
) -> None:
    clock = FakeClock()
    broker = StubBroker()
    playback = Playback(answer(401, 'Bearer error="invalid_token", error_description="again"'))
    replays = replays_with(playback, clock)
    f = rejected_flow(INVALID)
    await respond(replays, f, backend, broker)
    assert f.response is not None
    assert f.response.headers["WWW-Authenticate"].endswith('"again"')  # the replay's answer
    assert len(playback.started) == 1

    # The fresh token the replay carried, rejected too: not evicted again for a while.
    later = rejected_flow(INVALID, token="tok-2")
    await respond(replays, later, backend, broker)
    assert later.metadata["oauth2"]["no_replay"] == "a fresh token was rejected just before"
    assert len(playback.started) == 1
    assert broker.calls == [("invalidate", "tok-1"), ("token", None)]

    clock.advance(replay_module.REJECTED_FRESH_COOLDOWN)  # then it may be evicted again
    playback.outcomes.append(answer(200))
    await respond(replays, rejected_flow(INVALID), backend, broker)
    assert len(playback.started) == 2


@pytest.mark.anyio
async def test_not_rejected_or_switched_off_nothing_happens(make_grant) -> None:
    broker, playback = StubBroker(), Playback()
    replays = replays_with(playback)
    on = BackendConfig(name="api", hosts=(), grant=make_grant())
    off = BackendConfig(name="api", hosts=(), grant=make_grant(), retry_on_401=False)
    no_token = rejected_flow(INVALID)
    del no_token.request.headers["Authorization"]
    for f, backend in [
        (rejected_flow(status=403), on),
        (rejected_flow('Bearer error="invalid_request"'), on),
        (rejected_flow(INVALID), off),
        (no_token, on),
    ]:
        assert await respond(replays, f, backend, broker) is PASSED
        assert f.metadata["oauth2"] == {"backend": "api", "header": "Authorization"}
    assert broker.calls == []
    assert playback.started == []


@pytest.mark.anyio
async def test_streamed_body_evicts_but_is_not_replayed(backend: BackendConfig) -> None:
    broker, playback = StubBroker(), Playback()
    f = rejected_flow(INVALID)
    f.request.stream = True
    await respond(replays_with(playback), f, backend, broker)
    assert broker.calls == [("invalidate", "tok-1")]
    assert playback.started == []
    assert f.response is not None
    assert f.response.status_code == 401
    assert f.metadata["oauth2"]["no_replay"] == "the request body was streamed"


@pytest.mark.anyio
async def test_no_fresh_token_is_returned_for_the_caller_to_refuse(backend: BackendConfig) -> None:
    broker, playback = StubBroker(), Playback()
    broker.error = TokenError("token endpoint unreachable")
    f = rejected_flow(INVALID)
    outcome = await replays_with(playback).on_response(f, backend, backend.grant, broker)
    assert outcome == Outcome(no_token=broker.error)
    assert playback.started == []
    assert [call for call, _ in broker.calls] == ["invalidate", "token"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("outcome", "error"),
    [("Connection refused", "Connection refused"), (None, "no answer within 0.05 s")],
)
async def test_failed_replay_leaves_the_401(backend: BackendConfig, outcome, error) -> None:
    broker, playback = StubBroker(), Playback(outcome)
    replays = replays_with(playback, timeout=0.05)
    f = rejected_flow(INVALID)
    await respond(replays, f, backend, broker)
    assert f.response is not None
    assert f.response.status_code == 401
    assert f.metadata["oauth2"]["replayed"] is True
    assert f.metadata["oauth2"]["replay_error"] == error
    assert replays._pending == {}


@pytest.mark.anyio
async def test_replay_given_up_on_while_queued_is_killed_when_it_runs(
    backend: BackendConfig,
) -> None:
    playback = Playback(None)
    replays = replays_with(playback, timeout=0.01)
    await respond(replays, rejected_flow(INVALID), backend, StubBroker())
    (late,) = playback.started
    late.live = True  # clientplayback finally sends it
    replays.drop_abandoned(late)
    assert late.error is not None
    assert late.error.msg == mflow.Error.KILLED_MESSAGE
    other = tflow.tflow()
    replays.drop_abandoned(other)
    assert other.error is None


@pytest.mark.anyio
async def test_replay_that_cannot_start(backend: BackendConfig) -> None:
    def refuse(replay: http.HTTPFlow) -> None:
        raise ReplayError("mitmproxy's clientplayback addon is not loaded")

    f = rejected_flow(INVALID)
    await respond(Replays(start=refuse), f, backend, StubBroker())
    assert f.response is not None
    assert f.response.status_code == 401
    assert f.metadata["oauth2"] == {
        "backend": "api",
        "header": "Authorization",
        "replay_error": "not sent: mitmproxy's clientplayback addon is not loaded",
    }


def test_settle_ignores_flows_that_are_not_our_replays() -> None:
    assert Replays().settle(tflow.tflow(resp=True)) is False


def test_start_client_replay_queues_a_copy_on_mitmproxys_clientplayback() -> None:
    f = rejected_flow(INVALID)
    with taddons.context(), pytest.raises(ReplayError, match="not loaded"):
        replay_module.start_client_replay(f)
    with taddons.context(playback := ClientPlayback()):
        with pytest.raises(ReplayError, match="live flow"):  # refused, not silently skipped
            replay_module.start_client_replay(f)
        copy = f.copy()
        replay_module.start_client_replay(copy)
        assert playback.count() == 1
        assert (copy.is_replay, copy.response) == ("request", None)
