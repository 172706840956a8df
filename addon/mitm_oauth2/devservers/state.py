"""What the two dev servers share: the registered clients, the knobs, the issued tokens, the
client-assertion ids seen and the request logs, behind one lock."""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
import time
from collections.abc import Mapping
from types import NoneType
from typing import Any

import jwt

from .clients import DEFAULT_CLIENTS
from .clients import DEFAULT_USERS
from .clients import Client
from .clients import as_clients

# name: (default, accepted types). None omits expires_in (the token then never expires) or
# token_type. status and/or body replace every token response (defaults: 200, server_error).
KNOBS: dict[str, tuple[Any, tuple[type, ...]]] = {
    "expires_in": (3600, (int, NoneType)),
    "token_type": ("Bearer", (str, NoneType)),
    "delay": (0, (int, float)),  # seconds to sleep before answering a token request
    "status": (None, (int, NoneType)),
    "body": (None, (str, NoneType)),
    "content_type": (None, (str, NoneType)),
    "retry_after": (None, (int, str, NoneType)),
    "down": (False, (bool,)),  # close token connections without answering
    # Issued access tokens start with this, so a test can find them wherever they leak.
    "token_prefix": ("", (str,)),
    # With status: the error_description echoes what the client sent to authenticate (its
    # Authorization header, client_secret, client_assertion and raw form), as careless servers do.
    "echo_auth": (False, (bool,)),
    # backend_status forces every backend answer (e.g. 401 or 403, token or not), with
    # backend_challenge as its WWW-Authenticate header when set.
    "backend_status": (None, (int, NoneType)),
    "backend_challenge": (None, (str, NoneType)),
    # seconds the backend waits before each answer (e.g. so concurrent requests overlap)
    "backend_delay": (0, (int, float)),
    # The header the backend takes the token from: "Authorization" wants "Bearer <token>",
    # any other name the bare token (e.g. "X-Api-Key: <token>").
    "backend_header": ("Authorization", (str,)),
    # False: take Basic credentials literally, like servers that skip RFC 6749 §2.3.1 decoding.
    "basic_decode": (True, (bool,)),
    # Discovery: the issuer the metadata names (None: this server's own base URL), and whether
    # the RFC 8414 and the OpenID Connect documents are served (False: 404).
    "metadata_issuer": (None, (str, NoneType)),
    "metadata_rfc8414": (True, (bool,)),
    "metadata_openid": (True, (bool,)),
    # True: access tokens are JWTs (RFC 9068: iss, sub, aud, scope, client_id, iat, exp, jti;
    # HS256 with a key of this server's), with token_audience as their `aud` when set.
    "jwt_tokens": (False, (bool,)),
    "token_audience": (None, (str, NoneType)),
    # RFC 9728: the backend's protected resource metadata document, served at
    # /.well-known/oauth-protected-resource and named in its 401s to requests without a token.
    "resource_metadata": (None, (dict, NoneType)),
    # DPoP (RFC 9449 §8): the nonce the token endpoint wants in proofs (None: no nonce).
    "dpop_nonce": (None, (str, NoneType)),
    # ... and the one the backend wants (a 401 use_dpop_nonce for a proof without it).
    "backend_dpop_nonce": (None, (str, NoneType)),
    # Token exchange (RFC 8693): refuse every exchange with this error code (None: judge each).
    "exchange_error": (None, (str, NoneType)),
    # refresh_token grant: a new refresh token with every use, and a spent one presented again
    # revokes every refresh token of its sign-in (reuse detection, RFC 9700 §4.14.2).
    "rotate_refresh_tokens": (True, (bool,)),
    # ... except within this many seconds of its spending (0: none, as oidc-provider)
    "refresh_reuse_grace": (0, (int, float)),
}


__all__ = ["DEFAULT_CLIENTS", "DEFAULT_USERS", "KNOBS", "Client", "State", "token_id"]


def token_id(token: str) -> str:
    """Short, non-secret identifier of a token, as echoed by the backend."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class State:
    """Everything both servers share; every access holds the lock."""

    def __init__(self, clients: Mapping[str, str | Client] | None = None) -> None:
        self.clients = as_clients(clients)
        self._lock = threading.Lock()
        self._jwt_key = secrets.token_bytes(32)  # signs JWT access tokens (jwt_tokens)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._knobs = {name: default for name, (default, _) in KNOBS.items()}
            self._tokens: dict[str, float | None] = {}  # token -> monotonic expiry
            self._bound: dict[str, str] = {}  # token -> SHA-256 of the certificate (RFC 8705 §3)
            self._jkt: dict[str, str] = {}  # token -> thumbprint of its DPoP key (RFC 9449 §6)
            self._logs: dict[str, list[dict[str, Any]]] = {
                "token": [],
                "backend": [],
                "metadata": [],
            }
            self._jtis: set[tuple[str, str]] = set()  # (client_id, jti) of accepted assertions
            # refresh token -> (client_id, sign-in); spent ones -> their sign-in
            self._refresh: dict[str, tuple[str, str]] = {}
            self._spent: dict[str, tuple[str, float]] = {}  # -> (sign-in, when spent)
            self._issued_refresh: list[str] = []  # every one, for the tests that look for them
            self._revoked_sign_ins = 0
            self._arrived = 0  # token requests received, answered or not (the log waits)

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if key not in KNOBS:
                raise ValueError(f"unknown knob {key!r}")
            types = KNOBS[key][1]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ValueError(f"bad value for {key!r}: {value!r}")
        with self._lock:  # configure({}) just reads the knobs
            self._knobs.update(changes)
            return dict(self._knobs)

    def issue_refresh(self, client_id: str, sign_in: str | None = None) -> str:
        """A new refresh token for `client_id`, of a new sign-in unless one is named."""
        with self._lock:
            token = str(self._knobs["token_prefix"]) + "rt-" + secrets.token_urlsafe(32)
            self._refresh[token] = (client_id, sign_in or secrets.token_hex(8))
            self._issued_refresh.append(token)
        return token

    def use_refresh(self, token: str, client_id: str, spend: bool = True) -> str | None:
        """The sign-in of a live refresh token of `client_id` (spent now when tokens rotate,
        unless not `spend`), or None. A spent one presented again revokes its whole sign-in,
        unless within `refresh_reuse_grace` seconds of its spending (it then works again)."""
        with self._lock:
            live = self._refresh.get(token)
            spent = self._spent.get(token)
            if live is None and spent is not None:
                sign_in, when = spent
                if time.monotonic() - when < self._knobs["refresh_reuse_grace"]:
                    live = (client_id, sign_in)  # Okta's grace period, Auth0's reuse interval
                else:
                    self._refresh = {k: v for k, v in self._refresh.items() if v[1] != sign_in}
                    self._revoked_sign_ins += 1
                    return None
            if live is None or live[0] != client_id:
                return None
            if spend and self._knobs["rotate_refresh_tokens"]:
                self._refresh.pop(token, None)
                self._spent.setdefault(token, (live[1], time.monotonic()))
            return live[1]

    def check_user(self, username: str, password: str) -> bool:
        expected = DEFAULT_USERS.get(username)
        return expected is not None and secrets.compare_digest(expected, password)

    def check_client(self, client_id: str, secret: str) -> bool:
        client = self.clients.get(client_id)
        expected = None if client is None else client.secret
        return expected is not None and secrets.compare_digest(expected.encode(), secret.encode())

    def use_jti(self, client_id: str, jti: str) -> bool:
        """False if this client already used this assertion id (a replay)."""
        with self._lock:
            if (client_id, jti) in self._jtis:
                return False
            self._jtis.add((client_id, jti))
            return True

    def issue(
        self,
        expires_in: int | None,
        prefix: str = "",
        bound_to: str | None = None,
        jkt: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A new token; `bound_to`: the hex SHA-256 of the client certificate it is bound to;
        `jkt`: the thumbprint of the DPoP key it is bound to; `claims`: a JWT saying these."""
        token = prefix + (secrets.token_urlsafe(32) if claims is None else self._jwt(claims))
        with self._lock:
            self._tokens[token] = None if expires_in is None else time.monotonic() + expires_in
            if bound_to is not None:
                self._bound[token] = bound_to
            if jkt is not None:
                self._jkt[token] = jkt
        return token

    def _jwt(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        issued = {"iat": now, "jti": secrets.token_hex(8), **claims}
        return jwt.encode({k: v for k, v in issued.items() if v is not None}, self._jwt_key)

    def dpop_key(self, token: str) -> str | None:
        with self._lock:
            return self._jkt.get(token)

    def binding(self, token: str) -> str | None:
        with self._lock:
            return self._bound.get(token)

    def token_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token, float("-inf"))
        return expiry is None or time.monotonic() < expiry

    def revoke(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._bound.clear()
            self._jkt.clear()

    def arrive(self) -> None:
        with self._lock:
            self._arrived += 1

    def record(self, log: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._logs[log].append(entry)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            logs, arrived = copy.deepcopy(self._logs), self._arrived
            refresh_tokens, revoked = list(self._issued_refresh), self._revoked_sign_ins
        return {
            "refresh_tokens_issued": refresh_tokens,
            "sign_ins_revoked": revoked,
            "token_requests": len(logs["token"]),
            "token_requests_arrived": arrived,
            "token_request_log": logs["token"],
            "backend_requests": logs["backend"],
            "metadata_requests": logs["metadata"],
        }
