"""What a backend's authorization server needs to hear from us: the client-credentials request."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from dataclasses import field

from .policy import DEFAULT_REFRESH_MARGIN


class Secret:
    """A string that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class AuthMethod(enum.StrEnum):
    """How the client authenticates at the token endpoint (RFC 6749 §2.3, OAuth registry names)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"


@dataclass(frozen=True)
class ClientCredentials:
    """One client-credentials grant: everything that decides which token the server issues."""

    token_url: str
    client_id: str
    client_secret: Secret = field(repr=False)
    scopes: tuple[str, ...] = ()
    auth_method: AuthMethod = AuthMethod.CLIENT_SECRET_BASIC

    @property
    def scope(self) -> str | None:
        """The `scope` parameter as sent: space-separated, or None when no scope is asked for."""
        return " ".join(self.scopes) if self.scopes else None


@dataclass(frozen=True)
class TokenGrant:
    """One backend's token: the credentials to ask with, our cap on a token's age, and how
    long before expiry to renew it (see policy.safety_margin)."""

    backend: str
    credentials: ClientCredentials
    max_token_age: float
    refresh_margin: float = DEFAULT_REFRESH_MARGIN
