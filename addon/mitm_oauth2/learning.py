"""Learning the backends nobody configured (RFC 9728): a 401 from a host that no `[[backend]]`
names, whose challenge names its protected resource metadata (`WWW-Authenticate: Bearer
resource_metadata="..."`, as MCP servers send it), makes the proxy read that metadata and its
authorization server's, once per host, and offer a ready `[[backend]]` table: on the flow, in one
log line and from `oauth.suggest`. No token is asked for until a person adds the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import http

from . import story
from .challenge import resource_metadata_named
from .client.resource_metadata import ResourceLearner
from .config.suggestion import suggested_table
from .model.background import in_background
from .model.errors import LearningError
from .model.learned import LearnedBackend

logger = logging.getLogger(__name__)

MAX_HOSTS = 256  # hosts learned (or refused) and remembered, whatever hosts clients name


@dataclass(frozen=True)
class Lesson:
    """What one host's metadata taught: a suggested table, or why there is none."""

    host: str
    learned: LearnedBackend | None = None
    table: str | None = None
    refused: str | None = None


class Learning:
    """The hosts learned from, each once; `make_learner` gives the HTTP side when first needed."""

    def __init__(self, make_learner: Callable[[], ResourceLearner]) -> None:
        self._make_learner = make_learner
        self._learner: ResourceLearner | None = None
        self._lessons: dict[str, asyncio.Task[Lesson]] = {}
        self._full = False
        self.enabled = True  # oauth2_learn

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """For a 401 to a request no backend took: learn from its metadata if it names some
        (a coroutine then, which tells the flow), else nothing."""
        assert flow.response is not None
        url = resource_metadata_named(flow.response) if self.enabled else None
        if url is None:
            return None
        request = flow.request
        default_port = 443 if request.scheme == "https" else 80
        host = request.host if request.port == default_port else f"{request.host}:{request.port}"
        lesson = self._lessons.get(host)
        if lesson is None:
            if len(self._lessons) >= MAX_HOSTS:  # no more: a flood of names gets no fetches
                if not self._full:
                    self._full = True
                    logger.warning("oauth2: %d hosts learned from; no more", MAX_HOSTS)
                return None
            lesson = self._lessons[host] = asyncio.ensure_future(
                self._learn(host, request.url, url)  # where it went, whatever Host said
            )
        return self._tell(flow, lesson)

    def suggestions(self) -> str:
        """Every table learned so far, as TOML to paste into the configuration."""
        done = [t for t in self._lessons.values() if t.done() and not t.cancelled()]
        lessons = [t.result() for t in done if t.exception() is None]
        return "\n".join(lesson.table for lesson in lessons if lesson.table)

    def close(self) -> None:
        for lesson in self._lessons.values():
            lesson.cancel()
        if self._learner is not None:
            in_background(self._learner.aclose())
            self._learner = None

    @staticmethod
    async def _tell(flow: http.HTTPFlow, lesson: asyncio.Task[Lesson]) -> None:
        # The first 401 from a host waits for its lesson (bounded by the learner's timeouts);
        # the later ones find it done.
        try:
            taught = await asyncio.shield(lesson)
        except asyncio.CancelledError:
            if lesson.cancelled():  # the addon is going away: the answer goes on untold
                return
            raise
        story.learned(flow, taught)

    async def _learn(self, host: str, request_url: str, metadata_url: str) -> Lesson:
        if self._learner is None:
            self._learner = self._make_learner()
        try:
            learned = await self._learner.learn(request_url, metadata_url)
        except Exception as e:  # whatever the server sent, the answer goes on, told
            why = str(e) if isinstance(e, LearningError) else f"internal error ({type(e).__name__})"
            logger.warning(
                "oauth2: %s answered 401 naming resource metadata that cannot be used: %s",
                host,
                why,
            )
            return Lesson(host, refused=why)
        logger.warning(
            "oauth2: %s wants tokens of %s (RFC 9728 metadata); `oauth.suggest` prints a "
            "[[backend]] table for it, which this proxy does not use until you add it",
            host,
            learned.issuer,
        )
        return Lesson(host, learned, suggested_table(host, learned, self._learner.ca_file))
