"""token_exchange in the proxy (RFC 8693): the caller's own token, read from its request,
chooses the grant (tokens.subjects), and is taken off the request once the token exchanged for
it is on: the backend never sees the caller's token.

A request without one is answered 401 with a challenge, one with a token the proxy will not
send anywhere (expired, over 16 KiB, not one printable line) or the server refuses 401 or 403;
nothing is forwarded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass

from mitmproxy import http

from . import story
from .config.backend import BackendConfig
from .model.credentials import TokenGrant
from .model.errors import CallerTokenRefused
from .model.net import header_values
from .problem import Problem
from .problem import caller_token_missing
from .problem import caller_token_refused
from .tokens.subjects import MAX_SUBJECT_TOKEN_BYTES
from .tokens.subjects import SubjectGrants

logger = logging.getLogger(__name__)

MAX_TOLD = 1024  # (backend, cause) pairs logged once each, until the configuration changes
_ONE_PRINTABLE_LINE = re.compile(rb"[\x21-\x7e]+")  # a token: no space, no control, ASCII


def caller_token(request: http.Request, header: str) -> str | None:
    """The caller's token in `header` (`Authorization: Bearer <token>`, or the whole value of
    another header); None when there is none. CallerTokenRefused when it cannot be sent on."""
    return _read_token(header_values(request.headers.fields, header.lower().encode()), header)


def _read_token(values: list[bytes], header: str) -> str | None:
    # Raw bytes, not the decoded Headers: a token is ASCII (anything else is refused below, as
    # the decoded value would be).
    if not values:
        return None
    if len(values) > 1:
        raise CallerTokenRefused(f"the request has {len(values)} {header} headers")
    raw = values[0].strip()
    if header.lower() == "authorization":
        scheme, _, raw = raw.partition(b" ")
        if scheme.lower() != b"bearer":
            return None  # another scheme is no bearer token: challenged like a missing one
        raw = raw.strip()
    if not raw:
        return None
    if len(raw) > MAX_SUBJECT_TOKEN_BYTES:
        raise CallerTokenRefused("the caller's token is longer than 16 KiB")
    if not _ONE_PRINTABLE_LINE.fullmatch(raw):
        raise CallerTokenRefused("the caller's token is not one line of printable ASCII")
    return raw.decode()


@dataclass
class _Backend:
    """One token_exchange backend's callers, and where their token comes from."""

    grants: SubjectGrants
    header: str  # subject_header
    wanted: bytes  # that, as header names are compared
    apart: bool  # not the header the exchanged token goes in: taken off the request


class Callers:
    """The token_exchange backends' callers: their grants, and which grant each flow on its
    way was sent with (a 401 from the backend evicts that caller's token)."""

    def __init__(self, forget: Callable[[TokenGrant], None]) -> None:
        self._forget = forget
        self._by_backend: dict[str, _Backend] = {}
        # flow id -> its caller's grant; empty unless a token_exchange backend has callers, and
        # every response looks here first
        self.in_flight: dict[str, TokenGrant] = {}
        self._told: set[tuple[str, str]] = set()

    def configure(self, backends: Iterable[BackendConfig]) -> None:
        """Keeps the callers of backends whose grant is unchanged; forgets the others'."""
        kept: dict[str, _Backend] = {}
        for backend in backends:
            header = backend.subject_header
            if header is None:
                continue
            known = self._by_backend.pop(backend.name, None)
            if known is not None and known.grants.template == backend.grant:
                known.grants.limit = backend.max_exchanged_tokens
                grants = known.grants
            else:
                if known is not None:
                    known.grants.clear()
                grants = SubjectGrants(backend.grant, backend.max_exchanged_tokens, self._forget)
            wanted = header.lower()
            kept[backend.name] = _Backend(
                grants, header, wanted.encode(), wanted != backend.header.lower()
            )
        for gone in self._by_backend.values():
            gone.grants.clear()
        self._by_backend = kept
        self._told.clear()

    def grant(self, request: http.Request, backend: BackendConfig) -> TokenGrant | Problem:
        """The grant for this request's caller, or the Problem to answer it with."""
        callers = self._by_backend[backend.name]
        values = header_values(request.headers.fields, callers.wanted)
        try:
            if len(values) == 1:  # a caller seen before: nothing to read again
                known = callers.grants.known(values[0])
                if known is not None:
                    return known
            found = _read_token(values, callers.header)
            if found is None:
                return caller_token_missing(backend.name, callers.header)
            return callers.grants.grant(values[0], found)
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
        callers = self._by_backend[backend.name]
        if callers.apart:
            flow.request.headers.pop(callers.header, None)
        self.in_flight[flow.id] = grant
        subject = grant.subject
        if subject is not None:
            story.for_caller(flow, subject.fingerprint)

    def answered(self, flow: http.HTTPFlow) -> TokenGrant | None:
        """The grant `flow` was sent with, if it was a caller's; forgotten now."""
        return self.in_flight.pop(flow.id, None)

    def callers(self, backend: str) -> int:
        callers = self._by_backend.get(backend)
        return 0 if callers is None else len(callers.grants)

    def grants(self, backend: str) -> list[TokenGrant]:
        """The grants of `backend`'s callers, as remembered now."""
        callers = self._by_backend.get(backend)
        return [] if callers is None else callers.grants.grants()
