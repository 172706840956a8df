"""The 401 rules and replays: which answers are retried, how a replay is started and settled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.addons.clientplayback import ClientPlayback
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2 import addon as addon_module
from mitm_oauth2 import replay as replay_module
from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.config import BackendConfig
from mitm_oauth2.replay import Action
from mitm_oauth2.replay import ReplayError
from mitm_oauth2.replay import Replays
from mitm_oauth2.replay import decide
from mitm_oauth2.replay import parse_challenges
from mitm_oauth2.replay import token_rejected
from mitm_oauth2.tokens import Token
from mitm_oauth2.tokens import TokenError

INVALID = 'Bearer error="invalid_token"'


class StubBroker:
    """Hands out tok-1, tok-2, ...: invalidating the current token makes the next one current."""

    def __init__(self) -> None:
        self.serial = 1
        self.error: TokenError | None = None
        self.calls: list[tuple[str, str | None]] = []

    @property
    def current(self) -> str:
        return f"tok-{self.serial}"

    async def token(self, grant) -> Token:
        self.calls.append(("token", None))
        if self.error is not None:
            raise self.error
        return Token(self.current, "Bearer", issued_at=0.0, lifetime=3600.0)

    async def invalidate(self, grant, access_token: str) -> None:
        self.calls.append(("invalidate", access_token))
        if access_token == self.current:  # compare-and-delete
            self.serial += 1

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(status: int, *challenges: str, content: bytes = b"{}") -> http.Response:
    headers = [(b"WWW-Authenticate", c.encode()) for c in challenges]
    return http.Response.make(status, content, headers)


def rejected_flow(*challenges: str, status: int = 401, token: str = "tok-1") -> http.HTTPFlow:
    """A POST with a body that carried our token, and the backend's answer to it."""
    request = tutils.treq(host="api.test", port=443, scheme=b"https", method=b"POST")
    request.path = "/orders?id=7"
    request.content = b'{"item": 42}'
    request.headers["Authorization"] = f"Bearer {token}"
    request.headers["X-Request-Id"] = "r-1"
    f = tflow.tflow(req=request, resp=answer(status, *challenges))
    f.metadata["oauth2"] = {"backend": "api"}
    return f


@pytest.fixture
def backend(make_grant) -> BackendConfig:
    return BackendConfig(name="api", hosts=(), grant=make_grant())


class Playback:
    """Stands in for clientplayback: answers each copy with the next scripted outcome.

    An outcome is a Response, an error message (the `error` hook), or None (never answers).
    The copy is then handed to `finish` (Replays.settle, or the addon's hooks).
    """

    def __init__(self, *outcomes: http.Response | str | None) -> None:
        self.outcomes = list(outcomes)
        self.started: list[http.HTTPFlow] = []
        self.finish = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, replay: http.HTTPFlow) -> None:
        assert not replay.live  # what clientplayback's check() asks for
        self.started.append(replay)
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            task = asyncio.get_running_loop().create_task(self._run(replay, outcome))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, replay: http.HTTPFlow, outcome: http.Response | str) -> None:
        replay.is_replay, replay.live, replay.response = "request", True, None
        await self.finish(replay, outcome)


def settle_with(replays: Replays):
    async def finish(replay: http.HTTPFlow, outcome: http.Response | str) -> None:
        if isinstance(outcome, str):
            replay.error = mflow.Error(outcome)
        else:
            replay.response = outcome
        assert replays.settle(replay)

    return finish


def replays_with(playback: Playback, clock: Clock | None = None, timeout: float = 5) -> Replays:
    replays = Replays(start=playback, timeout=timeout, clock=clock or Clock())
    playback.finish = settle_with(replays)
    return replays


# --- which answers reject the token ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "challenges", "rejected"),
    [
        (401, [], True),
        (401, [""], True),  # an empty header is no challenge
        (401, [INVALID], True),
        (401, ['Bearer realm="api", error="invalid_token", error_description="expired"'], True),
        (401, ["bearer error=invalid_token"], True),  # scheme case, token form
        (401, ["Bearer"], True),  # RFC 6750 §3.1: the error code is optional
        (401, ['Bearer realm="api"'], True),
        (401, ['Basic realm="x", Bearer error="invalid_token"'], True),
        (401, ['Basic realm="x"', INVALID], True),
        (401, ['Bearer realm="a, b=c", error="invalid_token"'], True),  # comma in a quoted value
        (401, [r'Bearer realm="x\"y", error="invalid_token"'], True),  # escaped quote
        (401, ['Bearer error="invalid_request"'], False),
        (401, ['Bearer error="insufficient_scope"'], False),
        (401, ['Basic realm="x"'], False),  # wants other credentials
        (401, ['Bearer error="invalid_request", Basic realm="x"'], False),
        (403, ['Bearer error="insufficient_scope", scope="write"'], False),
        (403, [], False),
        (200, [], False),
        (500, [INVALID], False),
    ],
)
def test_token_rejected(status: int, challenges: list[str], rejected: bool) -> None:
    assert token_rejected(answer(status, *challenges)) is rejected


def test_parse_challenges() -> None:
    values = [r'Basic realm="x", Bearer realm="a, \"b\"", ERROR=invalid_token', "Negotiate abc=="]
    assert parse_challenges(values) == [
        ("basic", {"realm": "x"}),
        ("bearer", {"realm": 'a, "b"', "error": "invalid_token"}),
        ("negotiate", {"abc": "="}),  # a token68 credential: a param nobody reads
    ]
    assert parse_challenges(["@@@", ', , Bearer error="x"']) == [("bearer", {"error": "x"})]
    assert parse_challenges(['Bearer error="invalid_token']) == [
        ("bearer", {"error": '"invalid_token'})  # unterminated: taken as is, so not a match
    ]


# --- what to do about an answer --------------------------------------------------------------


def test_decide_replays_a_rejected_token() -> None:
    assert decide(rejected_flow(INVALID), retry_on_401=True)[0] is Action.REPLAY
    assert decide(rejected_flow(), retry_on_401=True)[0] is Action.REPLAY


@pytest.mark.parametrize(
    ("change", "action"),
    [
        (lambda f: setattr(f.response, "status_code", 403), Action.PASS),
        (lambda f: f.response.headers.__setitem__("WWW-Authenticate", "Basic"), Action.PASS),
        (lambda f: setattr(f, "is_replay", "request"), Action.PASS),
        (lambda f: f.metadata["oauth2"].__setitem__("replay_of", "abc"), Action.PASS),
        (lambda f: setattr(f.request, "stream", True), Action.EVICT),
        (lambda f: setattr(f.request, "raw_content", None), Action.EVICT),
        (lambda f: setattr(f.response, "stream", True), Action.EVICT),
    ],
    ids=["403", "basic", "replay", "replay_of", "stream", "no-content", "response-stream"],
)
def test_decide_exceptions(change, action: Action) -> None:
    f = rejected_flow(INVALID)
    change(f)
    assert decide(f, retry_on_401=True)[0] is action


def test_decide_retry_on_401_off() -> None:
    assert decide(rejected_flow(INVALID), retry_on_401=False) == (
        Action.PASS,
        "retry_on_401 is off",
    )


# --- Replays ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_replay_gives_the_caller_the_replayed_answer(backend: BackendConfig) -> None:
    broker, playback = StubBroker(), Playback(answer(200, content=b"accepted"))
    f = rejected_flow(INVALID)
    await replays_with(playback).on_response(f, backend, broker)
    assert broker.calls == [("invalidate", "tok-1"), ("token", None)]
    (replay,) = playback.started
    assert replay.id != f.id
    for attr in ("method", "url", "http_version", "raw_content"):
        assert getattr(replay.request, attr) == getattr(f.request, attr), attr
    assert replay.request.headers == f.request.headers
    assert f.response is not None
    assert (f.response.status_code, f.response.content) == (200, b"accepted")
    assert f.metadata["oauth2"] == {"backend": "api", "replayed": True}
    assert replay.metadata["oauth2"]["replay_of"] == f.id
    for flow in (f, replay):  # saved with the flow: JSON-safe, and no token in it
        assert "tok-" not in json.dumps(flow.metadata)


@pytest.mark.anyio
async def test_second_401_goes_to_the_caller_and_that_token_is_not_evicted_again(
    backend: BackendConfig,
) -> None:
    clock = Clock()
    broker = StubBroker()
    playback = Playback(answer(401, 'Bearer error="invalid_token", error_description="again"'))
    replays = replays_with(playback, clock)
    f = rejected_flow(INVALID)
    await replays.on_response(f, backend, broker)
    assert f.response is not None
    assert f.response.headers["WWW-Authenticate"].endswith('"again"')  # the replay's answer
    assert len(playback.started) == 1

    # playback's fake proxy did not inject tok-2 into the copy, so the copy carried tok-1:
    # the "fresh" token is the one the replay sent, whatever it is.
    later = rejected_flow(INVALID, token="tok-1")
    await replays.on_response(later, backend, broker)
    assert later.metadata["oauth2"]["no_replay"] == "a fresh token was rejected just before"
    assert len(playback.started) == 1
    assert broker.calls == [("invalidate", "tok-1"), ("token", None)]

    clock.now += replay_module.REJECTED_FRESH_COOLDOWN  # then it may be evicted again
    playback.outcomes.append(answer(200))
    await replays.on_response(rejected_flow(INVALID), backend, broker)
    assert len(playback.started) == 2


@pytest.mark.anyio
async def test_not_rejected_or_switched_off_nothing_happens(make_grant) -> None:
    broker, playback = StubBroker(), Playback()
    replays = replays_with(playback)
    on = BackendConfig(name="api", hosts=(), grant=make_grant())
    off = BackendConfig(name="api", hosts=(), grant=make_grant(), retry_on_401=False)
    await replays.on_response(rejected_flow(status=403), on, broker)
    await replays.on_response(rejected_flow('Bearer error="invalid_request"'), on, broker)
    await replays.on_response(rejected_flow(INVALID), off, broker)
    no_token = rejected_flow(INVALID)
    del no_token.request.headers["Authorization"]
    await replays.on_response(no_token, on, broker)
    assert broker.calls == []
    assert playback.started == []


@pytest.mark.anyio
async def test_streamed_body_evicts_but_is_not_replayed(backend: BackendConfig) -> None:
    broker, playback = StubBroker(), Playback()
    f = rejected_flow(INVALID)
    f.request.stream = True
    await replays_with(playback).on_response(f, backend, broker)
    assert broker.calls == [("invalidate", "tok-1")]
    assert playback.started == []
    assert f.response is not None
    assert f.response.status_code == 401
    assert f.metadata["oauth2"]["no_replay"] == "the request body was streamed"


@pytest.mark.anyio
async def test_no_fresh_token_gives_the_problem_document(backend: BackendConfig) -> None:
    broker, playback = StubBroker(), Playback()
    broker.error = TokenError("token endpoint unreachable")
    f = rejected_flow(INVALID)
    await replays_with(playback).on_response(f, backend, broker)
    assert playback.started == []
    assert f.response is not None
    assert f.response.status_code == 502
    assert f.response.headers["Content-Type"] == "application/problem+json"
    assert f.metadata["oauth2"]["error"] == "token endpoint unreachable"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("outcome", "error"),
    [("Connection refused", "Connection refused"), (None, "no answer within 0.05 s")],
)
async def test_failed_replay_leaves_the_401(backend: BackendConfig, outcome, error) -> None:
    broker, playback = StubBroker(), Playback(outcome)
    replays = replays_with(playback, timeout=0.05)
    f = rejected_flow(INVALID)
    await replays.on_response(f, backend, broker)
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
    await replays.on_response(rejected_flow(INVALID), backend, StubBroker())
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
    await Replays(start=refuse).on_response(f, backend, StubBroker())
    assert f.response is not None
    assert f.response.status_code == 401
    assert f.metadata["oauth2"] == {
        "backend": "api",
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


# --- through the addon's hooks ---------------------------------------------------------------

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
    monkeypatch.setattr(
        addon_module,
        "TokenBroker",
        type("B", (), {"on_disk": staticmethod(lambda d, lock_lease: broker)}),
    )
    extra = getattr(request, "param", "")
    path = tmp_path / "backends.toml"
    path.write_text(CONFIG.format(extra=extra), encoding="utf-8")
    addon = OAuth2Backend()
    playback = Playback()
    addon.replays = Replays(start=playback, timeout=5)

    async def through_the_proxy(replay: http.HTTPFlow, outcome: http.Response | str) -> None:
        await addon.requestheaders(replay)
        addon.request(replay)
        if isinstance(outcome, str):
            replay.error = mflow.Error(outcome)
            addon.error(replay)
        else:
            replay.response = outcome
            await addon.response(replay)

    playback.finish = through_the_proxy
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "c"))
        yield addon, broker, playback


async def sent_through(addon: OAuth2Backend, backend_answer: http.Response) -> http.HTTPFlow:
    request = tutils.treq(host="api.test", port=443, scheme=b"https", method=b"PUT")
    f = tflow.tflow(req=request)
    await addon.requestheaders(f)
    f.response = backend_answer
    await addon.response(f)
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
    assert replay.metadata["oauth2"] == {"backend": "api", "replay_of": f.id}
    assert f.metadata["oauth2"] == {"backend": "api", "replayed": True}
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
    await addon.requestheaders(other)
    await addon.response(other)
    refused = tflow.tflow(resp=answer(401))  # requestheaders answered it itself
    refused.metadata["oauth2"] = {"backend": "api", "error": "token endpoint unreachable"}
    await addon.response(refused)
    saved = await sent_through(addon, answer(200))
    saved.live = False
    saved.response = answer(401)
    await addon.response(saved)  # a flow loaded from a file
    assert playback.started == []
    assert ("invalidate", "tok-1") not in broker.calls
