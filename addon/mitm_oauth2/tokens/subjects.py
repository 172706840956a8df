"""token_exchange: one grant per caller's token, so that each caller gets a token of its own
(RFC 8693), cached, renewed and shared by a fleet like any other (the store's key is an HMAC of
the grant, the caller's token in it: never the token itself).

Bounded: at most `limit` callers per backend, the least recently seen forgotten first, so that a
flood of distinct tokens leaves memory as it was.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable

from ..model.claims import read_claims
from ..model.clock import Clock
from ..model.clock import SystemClock
from ..model.credentials import SubjectToken
from ..model.credentials import TokenGrant
from .policy import refuse_expired
from .policy import subject_left

DEFAULT_MAX_EXCHANGED_TOKENS = 10_000
MAX_SUBJECT_TOKEN_BYTES = 16 * 1024


class SubjectGrants:
    """The grants of one token_exchange backend, by what each caller presents (its header's
    value, the token in it).

    Looked up by a keyed digest of those bytes (the key is this process's own, made at random),
    so that the table holds no token as a key; a caller seen before costs that digest and no
    parsing, as what it presents was read and checked the first time. `forget` is told of each
    grant evicted (the broker drops what it holds for it).
    """

    def __init__(
        self,
        template: TokenGrant,
        limit: int,
        forget: Callable[[TokenGrant], None],
        clock: Clock | None = None,
    ) -> None:
        self.template = template
        self.limit = limit  # may be changed: it applies from the next new caller
        self._forget = forget
        self._clock = clock or SystemClock()
        self._key = os.urandom(32)
        self._grants: OrderedDict[bytes, TokenGrant] = OrderedDict()

    def __len__(self) -> int:
        return len(self._grants)

    def grants(self) -> list[TokenGrant]:
        return list(self._grants.values())

    def _digest(self, presented: bytes) -> bytes:
        # Keyed BLAKE2 is a MAC by design (RFC 7693 §2.9) at half the cost of HMAC-SHA256, and
        # this runs for every request to the backend.
        return hashlib.blake2b(presented, key=self._key, digest_size=16).digest()

    def known(self, presented: bytes) -> TokenGrant | None:
        """The grant of the caller that presented exactly these bytes before, if remembered;
        CallerTokenRefused when its token has expired."""
        digest = self._digest(presented)
        grant = self._grants.get(digest)
        if grant is not None:
            self._grants.move_to_end(digest)
            self._refuse_expired(grant)
        return grant

    def grant(self, presented: bytes, subject_token: str) -> TokenGrant:
        """The grant for `subject_token`, read from `presented`; CallerTokenRefused when it has
        expired (a JWT's `exp`: nothing is exchanged for it)."""
        digest = self._digest(presented)
        grant = self._grants.get(digest)
        if grant is None:
            claims = read_claims(subject_token)
            made = SubjectToken(subject_token, claims.expires if claims else None)
            grant = self.template.for_subject(made)
            self._grants[digest] = grant
            while len(self._grants) > self.limit:
                _, evicted = self._grants.popitem(last=False)
                self._forget(evicted)
        else:
            self._grants.move_to_end(digest)
        self._refuse_expired(grant)
        return grant

    def _refuse_expired(self, grant: TokenGrant) -> None:
        subject = grant.subject
        if subject is not None and subject.expires is not None:  # only a JWT says when
            refuse_expired(subject_left(subject, self._clock.wall()))

    def clear(self) -> None:
        """Forgets every caller (the backend's configuration changed or went away)."""
        for grant in self._grants.values():
            self._forget(grant)
        self._grants.clear()
