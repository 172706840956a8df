"""What the two dev servers share: the registered clients, the knobs, the issued tokens and the
request logs, behind one lock."""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
import time
from types import NoneType
from typing import Any

DEFAULT_CLIENTS: dict[str, str] = {"demo-client": "demo secret with : % + & chars"}
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
    # backend_status forces every backend answer (e.g. 401 or 403, token or not), with
    # backend_challenge as its WWW-Authenticate header when set.
    "backend_status": (None, (int, NoneType)),
    "backend_challenge": (None, (str, NoneType)),
}


def token_id(token: str) -> str:
    """Short, non-secret identifier of a token, as echoed by the backend."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class State:
    """Everything both servers share; every access holds the lock."""

    def __init__(self, clients: dict[str, str] | None = None) -> None:
        self.clients = dict(DEFAULT_CLIENTS if clients is None else clients)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._knobs = {name: default for name, (default, _) in KNOBS.items()}
            self._tokens: dict[str, float | None] = {}  # token -> monotonic expiry
            self._logs: dict[str, list[dict[str, Any]]] = {"token": [], "backend": []}
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

    def check_client(self, client_id: str, secret: str) -> bool:
        expected = self.clients.get(client_id)
        return expected is not None and secrets.compare_digest(expected.encode(), secret.encode())

    def issue(self, expires_in: int | None) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = None if expires_in is None else time.monotonic() + expires_in
        return token

    def token_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token, float("-inf"))
        return expiry is None or time.monotonic() < expiry

    def revoke(self) -> None:
        with self._lock:
            self._tokens.clear()

    def arrive(self) -> None:
        with self._lock:
            self._arrived += 1

    def record(self, log: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._logs[log].append(entry)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            logs, arrived = copy.deepcopy(self._logs), self._arrived
        return {
            "token_requests": len(logs["token"]),
            "token_requests_arrived": arrived,
            "token_request_log": logs["token"],
            "backend_requests": logs["backend"],
        }
