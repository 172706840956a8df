"""token_exchange in the proxy (RFC 8693): the caller's own token, read from its request,
chooses the grant (tokens.subjects), and is taken off the request once the token exchanged for
it is on: the backend never sees the caller's token.

A request without one is answered 401 with a challenge, one with a token the proxy will not
send anywhere (expired, over 16 KiB, not one printable line) or the server refuses 401 or 403;
nothing is forwarded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Iterable

from mitmproxy import http

from . import story
from .config.backend import BackendConfig
from .model.credentials import TokenGrant
from .model.errors import CallerTokenRefused
from .problem import Problem
from .problem import caller_token_missing
from .problem import caller_token_refused
from .tokens.subjects import MAX_SUBJECT_TOKEN_BYTES
from .tokens.subjects import SubjectGrants

logger = logging.getLogger(__name__)

MAX_TOLD = 1024  # (backend, cause) pairs logged once each, until the configuration changes


def caller_token(request: http.Request, header: str) -> str | None:
    """The caller's token in `header` (`Authorization: Bearer <token>`, or the whole value of
    another header); None when there is none. CallerTokenRefused when it cannot be sent on."""
    # The raw fields, not the Headers mapping: every request to the backend asks, and a token
    # is ASCII (anything else is refused below, as the decoded value would be).
    wanted = header.lower().encode()
    values = [value for name, value in request.headers.fields if name.lower() == wanted]
    if not values:
        return None
    if len(values) > 1:
        raise CallerTokenRefused(f"the request has {len(values)} {header} headers")
    raw = values[0].strip()
    if wanted == b"authorization":
        scheme, _, raw = raw.partition(b" ")
        if scheme.lower() != b"bearer":
            return None  # another scheme is no bearer token: challenged like a missing one
        raw = raw.strip()
    if not raw:
        return None
    if len(raw) > MAX_SUBJECT_TOKEN_BYTES:
        raise CallerTokenRefused("the caller's token is longer than 16 KiB")
    if not (raw.isascii() and raw.decode().isprintable()) or b" " in raw:
        raise CallerTokenRefused("the caller's token is not one line of printable ASCII")
    return raw.decode()


class Callers:
    """The token_exchange backends' callers: their grants, and which grant each flow on its
    way was sent with (a 401 from the backend evicts that caller's token)."""

    def __init__(self, forget: Callable[[TokenGrant], None]) -> None:
        self._forget = forget
        self._by_backend: dict[str, SubjectGrants] = {}
        # flow id -> its caller's grant; empty unless a token_exchange backend has callers, and
        # every response looks here first
        self.in_flight: dict[str, TokenGrant] = {}
        self._told: set[tuple[str, str]] = set()

    def configure(self, backends: Iterable[BackendConfig]) -> None:
        """Keeps the callers of backends whose grant is unchanged; forgets the others'."""
        kept: dict[str, SubjectGrants] = {}
        for backend in backends:
            if backend.subject_header is None:
                continue
            known = self._by_backend.pop(backend.name, None)
            if known is not None and known.template == backend.grant:
                known.limit = backend.max_exchanged_tokens
                kept[backend.name] = known
                continue
            if known is not None:
                known.clear()
            kept[backend.name] = SubjectGrants(
                backend.grant, backend.max_exchanged_tokens, self._forget
            )
        for gone in self._by_backend.values():
            gone.clear()
        self._by_backend = kept
        self._told.clear()

    def grant(self, request: http.Request, backend: BackendConfig) -> TokenGrant | Problem:
        """The grant for this request's caller, or the Problem to answer it with."""
        assert backend.subject_header is not None  # only asked for token_exchange backends
        try:
            found = caller_token(request, backend.subject_header)
            if found is None:
                return caller_token_missing(backend.name, backend.subject_header)
            return self._by_backend[backend.name].grant(found)
        except CallerTokenRefused as e:
            return self.refused(backend.name, e)

    def refused(self, backend: str, error: CallerTokenRefused) -> Problem:
        """The caller's problem, told to the operator once per backend and cause."""
        told = (backend, error.oauth_error or error.cause)
        if told not in self._told:
            if len(self._told) >= MAX_TOLD:
                self._told.clear()
            self._told.add(told)
            logger.info(
                "backend %s: a caller's token was refused (%s); the caller gets 401/403, and "
                "nothing was forwarded",
                backend,
                error.cause,
            )
        return caller_token_refused(backend, error)

    def sent(self, flow: http.HTTPFlow, backend: BackendConfig, grant: TokenGrant) -> None:
        """The exchanged token is on `flow`: the caller's comes off, if it came in another
        header than the one the exchanged token went in."""
        header = backend.subject_header
        assert header is not None
        if header.lower() != backend.header.lower():
            flow.request.headers.pop(header, None)
        self.in_flight[flow.id] = grant
        subject = grant.credentials.subject
        if subject is not None:
            story.for_caller(flow, subject.fingerprint)

    def answered(self, flow: http.HTTPFlow) -> TokenGrant | None:
        """The grant `flow` was sent with, if it was a caller's; forgotten now."""
        return self.in_flight.pop(flow.id, None)

    def callers(self, backend: str) -> int:
        grants = self._by_backend.get(backend)
        return 0 if grants is None else len(grants)
