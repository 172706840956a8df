"""Self-healing on a backend's 401: evict the rejected token, get a fresh one, replay once.

The replay is mitmproxy's own client replay (the `clientplayback` addon) of a copy of the flow,
so it goes out with mitmproxy's upstream settings (TLS verification, upstream proxy mode, client
certificates) rather than around them. It passes through the addon chain again, where
`requestheaders` puts the fresh token on it; its `response` or `error` hook hands it back here.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mitmproxy import ctx
from mitmproxy import http

from . import redaction
from . import story
from .challenge import token_rejected
from .config.backend import BackendConfig
from .model.clock import Clock
from .model.clock import SystemClock
from .model.credentials import TokenGrant
from .model.errors import ReplayError
from .model.errors import TokenError
from .model.token import Token
from .model.token import fingerprint

logger = logging.getLogger(__name__)

# How long a request waits for its replay. mitmproxy has no upstream read timeout of its own,
# and a replay dropped from clientplayback's queue (`replay.client.stop`) would never finish.
REPLAY_TIMEOUT = 60.0
# After a token rejected right after it was issued, that token is not evicted again for this
# long: a backend that rejects every token would otherwise cost one token request per request.
REJECTED_FRESH_COOLDOWN = 30.0


class Broker(Protocol):
    """What a replay needs from the TokenBroker."""

    async def token(self, grant: TokenGrant) -> Token: ...

    async def invalidate(self, grant: TokenGrant, access_token: str) -> None: ...


# Sends a copy of a flow again; raises ReplayError when it cannot.
StartReplay = Callable[[http.HTTPFlow], None]


@dataclass(frozen=True)
class Outcome:
    """What became of a backend's answer to a request that carried our token (`story.after_401`
    tells it on the flow)."""

    replayed: bool = False  # a copy went out again with a fresh token
    not_replayed: str | None = None  # why a rejected token led to no replay
    replay_error: str | None = None  # why the replay brought no answer (the caller gets the 401)
    no_token: TokenError | None = None  # no fresh token could be had: the caller is refused


PASSED = Outcome()  # the answer goes to the caller as is


class Action(enum.Enum):
    PASS = "pass"  # the answer goes to the caller as is
    EVICT = "evict"  # the token was rejected, but the request cannot be sent again
    REPLAY = "replay"


def is_replay(flow: http.HTTPFlow) -> bool:
    """A client replay (ours or a user's): its answer goes to whoever replayed it, as is."""
    meta = flow.metadata.get("oauth2")
    return flow.is_replay == "request" or (isinstance(meta, dict) and "replay_of" in meta)


def decide(flow: http.HTTPFlow, retry_on_401: bool) -> tuple[Action, str]:
    """What to do with a backend's answer to a request that carried our token, and why."""
    response = flow.response
    if response is None or not token_rejected(response):
        return Action.PASS, "the token was not rejected"
    if not retry_on_401:
        return Action.PASS, "retry_on_401 is off"
    if is_replay(flow):
        return Action.PASS, "a replay is never replayed again"
    if flow.request.stream or flow.request.raw_content is None:
        return Action.EVICT, "the request body was streamed"
    if response.stream or response.raw_content is None:
        return Action.EVICT, "the response was already streamed to the client"
    return Action.REPLAY, "token rejected"


def sent_token(flow: http.HTTPFlow, backend: BackendConfig) -> str | None:
    """The access token on the request, as `requestheaders` put it there (header and format)."""
    value = flow.request.headers.get(backend.header, "")
    before, _, after = backend.header_format.partition("{token}")
    if not (value.startswith(before) and value.endswith(after)):
        return None
    return value[len(before) : len(value) - len(after)].strip() or None


def start_client_replay(replay: http.HTTPFlow) -> None:
    """Queues `replay` on mitmproxy's client replay (the `replay.client` command)."""
    # (mitmproxy leaves AddonManager.get, Flow.kill and Flow.copy unannotated.)
    playback = ctx.master.addons.get("clientplayback")  # type: ignore[no-untyped-call]
    if playback is None:
        raise ReplayError("mitmproxy's clientplayback addon is not loaded")
    problem = playback.check(replay)
    if problem:  # start_replay would only log and skip it, leaving us waiting
        raise ReplayError(problem)
    playback.start_replay([replay])


class Replays:
    """Handles backend answers that reject our token, and the replays they start."""

    def __init__(
        self,
        start: StartReplay = start_client_replay,
        timeout: float = REPLAY_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        self._start = start
        self._timeout = timeout
        self._clock = clock or SystemClock()
        # replay flow id -> (original flow id, the future its original waits on)
        self._pending: dict[str, tuple[str, asyncio.Future[http.HTTPFlow]]] = {}
        # replays given up on while still queued: killed before they go out
        self._abandoned: set[str] = set()
        # backend -> (fingerprint of a token rejected right after it was issued, when); only a
        # fingerprint, so no token stays around longer than the broker keeps it

        self._rejected_fresh: dict[str, tuple[str, float]] = {}

    async def on_response(
        self, flow: http.HTTPFlow, backend: BackendConfig, grant: TokenGrant, broker: Broker
    ) -> Outcome:
        """A backend answered `flow`, which carried the token of `grant` (the backend's, or a
        caller's): heal a rejected token. A replay's answer replaces the flow's response."""
        action, reason = decide(flow, backend.retry_on_401)
        token = sent_token(flow, backend)
        if action is Action.PASS or token is None:
            return PASSED
        if self._recently_rejected_fresh(backend.name, token):
            return Outcome(not_replayed="a fresh token was rejected just before")
        # Compare-and-delete: a token renewed meanwhile (here or by another process) is kept.
        await broker.invalidate(grant, token)
        if backend.subject_header is not None:
            # token_exchange: the caller's token came off the request, so it cannot be sent again
            reason = "the caller's token is not kept to send the request again"
            logger.info("backend %s: exchanged token rejected (401), evicted", backend.name)
            return Outcome(not_replayed=reason)
        if action is Action.EVICT:
            logger.info(
                "backend %s: token rejected (401), evicted; not replayed: %s", backend.name, reason
            )
            return Outcome(not_replayed=reason)
        try:
            # Single flight in the broker; the replay's requestheaders then finds it in memory,
            # so clientplayback's queue (one replay at a time by default) never waits on the IdP.
            await broker.token(grant)
        except TokenError as e:
            return Outcome(no_token=e)
        replay = await self._again(flow, backend)
        if isinstance(replay, Outcome):
            return replay
        answer = replay.response
        assert answer is not None  # _again returns only a replay that has a response
        # The replay's token as its requestheaders told it (the header may be redacted by now).
        meta = replay.metadata.get("oauth2")
        fresh = meta.get("fingerprint") if isinstance(meta, dict) else None
        if fresh is not None and token_rejected(answer):
            self._rejected_fresh[backend.name] = (fresh, self._clock.monotonic())
            logger.warning(
                "backend %s: token rejected (401), and the fresh one too: the client gets the "
                "second 401 (%.0f s without eviction for that token)",
                backend.name,
                REJECTED_FRESH_COOLDOWN,
            )
        else:
            logger.info(
                "backend %s: token rejected (401); replayed with a fresh token: %d",
                backend.name,
                answer.status_code,
            )
        return Outcome(replayed=True)

    async def with_nonce(self, flow: http.HTTPFlow, backend: BackendConfig) -> Outcome:
        """Sends `flow` again for a resource server that asked for a DPoP nonce: the same
        token, a new proof with the nonce (the replay's requestheaders makes it)."""
        if is_replay(flow):
            return Outcome(not_replayed="a replay is never replayed again")
        if flow.request.stream or flow.request.raw_content is None:
            return Outcome(not_replayed="the request body was streamed")
        replay = await self._again(flow, backend)
        if isinstance(replay, Outcome):
            return replay
        assert replay.response is not None  # _again returns only a replay that has a response
        logger.info(
            "backend %s: asked for a DPoP nonce; replayed with it: %d",
            backend.name,
            replay.response.status_code,
        )
        return Outcome(replayed=True)

    async def _again(self, flow: http.HTTPFlow, backend: BackendConfig) -> http.HTTPFlow | Outcome:
        """A copy of `flow` sent again: the finished copy, whose answer is now the flow's too;
        or the Outcome saying why there is none."""
        try:
            replay = await self._replay(flow)
        except ReplayError as e:
            return self._failed(backend, Outcome(replay_error=f"not sent: {e}"))
        if isinstance(replay, str):
            return self._failed(backend, Outcome(replayed=True, replay_error=replay))
        assert replay.response is not None  # _replay returns only a replay that has a response
        flow.response = replay.response.copy()
        return replay

    @staticmethod
    def _failed(backend: BackendConfig, outcome: Outcome) -> Outcome:
        logger.warning(
            "backend %s: replay after a 401 failed (%s); the client gets the 401",
            backend.name,
            outcome.replay_error,
        )
        return outcome

    def settle(self, flow: http.HTTPFlow) -> bool:
        """Hands a finished replay (`response` or `error`) to the request waiting for it.

        Returns True if the flow is one of our replays.
        """
        pending = self._pending.pop(flow.id, None)
        if pending is None:
            return False
        original_id, waiting = pending
        story.replay_of(flow, original_id)
        if not waiting.done():
            waiting.set_result(flow)
        return True

    def drop_abandoned(self, flow: http.HTTPFlow) -> None:
        """Kills a replay given up on before it left: its caller already has an answer."""
        if flow.id in self._abandoned:
            self._abandoned.discard(flow.id)
            if flow.killable:
                flow.kill()  # type: ignore[no-untyped-call]

    async def _replay(self, flow: http.HTTPFlow) -> http.HTTPFlow | str:
        """Sends a copy of `flow` again: the finished copy, or why it has no answer.

        Raises ReplayError when the copy could not be sent at all.
        """
        # Same method, URL, headers and body; a new id; not live (as clientplayback requires).
        replay: http.HTTPFlow = flow.copy()  # type: ignore[no-untyped-call]
        redaction.strip(replay)
        waiting = asyncio.get_running_loop().create_future()
        self._pending[replay.id] = (flow.id, waiting)
        try:
            self._start(replay)
            finished: http.HTTPFlow = await asyncio.wait_for(waiting, self._timeout)
        except TimeoutError:
            if replay.killable:  # in flight: its answer, if any, is dropped
                replay.kill()  # type: ignore[no-untyped-call]
            else:  # still queued
                self._abandoned.add(replay.id)
            return f"no answer within {self._timeout:g} s"
        finally:
            self._pending.pop(replay.id, None)
        if finished.response is None:
            return finished.error.msg if finished.error else "no response"
        return finished

    def _recently_rejected_fresh(self, backend: str, token: str) -> bool:
        rejected = self._rejected_fresh.get(backend)
        if rejected is None:
            return False
        digest, when = rejected
        if self._clock.monotonic() - when >= REJECTED_FRESH_COOLDOWN:
            del self._rejected_fresh[backend]
            return False
        return digest == fingerprint(token)
