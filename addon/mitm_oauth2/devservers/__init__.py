"""Local OAuth2 authorization server and protected backend, for the demo and the tests.

``python -m mitm_oauth2.devservers [--clients JSON] [--tls-cert PEM --tls-key PEM]
[--token-port N] [--backend-port N]`` binds 127.0.0.1 only, prints one JSON line with
``token_url``, ``backend_url`` and ``admin_url`` and serves until SIGTERM/SIGINT.
Admin API on the token server: ``POST /_admin/config`` (JSON object; only the given knobs
change, see ``KNOBS``), ``POST /_admin/reset``, ``POST /_admin/revoke``, ``GET /_admin/stats``.
"""

from __future__ import annotations

from .servers import DevServers
from .state import DEFAULT_CLIENTS
from .state import KNOBS
from .state import State
from .state import token_id

__all__ = ["DEFAULT_CLIENTS", "KNOBS", "DevServers", "State", "token_id"]
