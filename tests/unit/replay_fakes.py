"""Stand-ins for the 401 replay tests: a stub broker, a clock, flows with a backend's answer, and a
fake client playback that answers each replayed copy with a scripted outcome."""

from __future__ import annotations

import asyncio

from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2 import story
from mitm_oauth2.config.backend import BackendConfig
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.model.token import Token
from mitm_oauth2.model.token import fingerprint
from mitm_oauth2.replay import Outcome
from mitm_oauth2.replay import Replays
from mitm_oauth2.tokens.status import Counters
from tests.unit.broker_fakes import BrokerStub
from tests.unit.broker_fakes import FakeClock

INVALID = 'Bearer error="invalid_token"'


class StubBroker(BrokerStub):
    """Hands out tok-1, tok-2, ...: invalidating the current token makes the next one current."""

    def __init__(self) -> None:
        self.serial = 1
        self.error: TokenError | None = None
        self.calls: list[tuple[str, str | None]] = []
        self.counters = Counters()

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
    f.metadata["oauth2"] = {"backend": "api", "header": "Authorization"}  # as story.issued has it
    return f


class Playback:
    """Stands in for clientplayback: answers each copy with the next scripted outcome.

    An outcome is a Response, an error message (the `error` hook), or None (never answers).
    The copy is then handed to `finish` (Replays.settle, or the addon's hooks).
    """

    def __init__(self, *outcomes: http.Response | str | None) -> None:
        self.outcomes = list(outcomes)
        self.started: list[http.HTTPFlow] = []
        self.handed: list[http.Headers] = []  # each copy's headers as handed to it
        self.finish = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, replay: http.HTTPFlow) -> None:
        assert not replay.live  # what clientplayback's check() asks for
        self.started.append(replay)
        self.handed.append(replay.request.headers.copy())
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            task = asyncio.get_running_loop().create_task(self._run(replay, outcome))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, replay: http.HTTPFlow, outcome: http.Response | str) -> None:
        replay.is_replay, replay.live, replay.response = "request", True, None
        await self.finish(replay, outcome)


def settle_with(replays: Replays, fresh: str = "tok-2"):
    """Answers a copy as the proxy would, after its requestheaders put `fresh` on it."""

    async def finish(replay: http.HTTPFlow, outcome: http.Response | str) -> None:
        replay.request.headers["Authorization"] = f"Bearer {fresh}"
        replay.metadata.setdefault("oauth2", {})["fingerprint"] = fingerprint(fresh)
        if isinstance(outcome, str):
            replay.error = mflow.Error(outcome)
        else:
            replay.response = outcome
        assert replays.settle(replay)

    return finish


def replays_with(playback: Playback, clock: FakeClock | None = None, timeout: float = 5) -> Replays:
    replays = Replays(start=playback, timeout=timeout, clock=clock or FakeClock())
    playback.finish = settle_with(replays)
    return replays


async def respond(
    replays: Replays, flow: http.HTTPFlow, backend: BackendConfig, broker: StubBroker
) -> Outcome:
    """What the addon's response hook does with a 401: the replay's outcome, told on the flow."""
    outcome = await replays.on_response(flow, backend, backend.grant, broker)
    story.after_401(flow, outcome)
    return outcome
