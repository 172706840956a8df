"""Local OAuth2 authorization server and protected backend, for the demo and the tests.

``python -m mitm_oauth2.devservers [--clients JSON] [--clients-file PATH]
[--tls-cert PEM --tls-key PEM] [--token-tls-cert PEM --token-tls-key PEM
[--token-client-ca PEM]] [--backend-client-ca PEM] [--token-port N] [--backend-port N]``
binds 127.0.0.1 only, prints one JSON line with ``token_url``, ``backend_url``, ``admin_url``
and ``issuer`` and serves until SIGTERM/SIGINT.

Token endpoint: ``POST /token`` (and ``/mtls/token``, the RFC 8705 alias), client_credentials
only. Clients authenticate with client_secret_basic, client_secret_post, client_secret_jwt or
private_key_jwt (RFC 7523: iss = sub = client id, aud = the token endpoint or the issuer, exp,
a jti never used before), a federated workload's assertion (workload identity: iss = the
registered platform issuer, sub = the registered workload, signed with the platform's key; it
may be presented again until it expires) or tls_client_auth (RFC 8705: a certificate from
--token-client-ca whose subject CN or SHA-256 fingerprint is registered for the client_id in
the body).
Metadata: ``GET /.well-known/oauth-authorization-server`` and
``/.well-known/openid-configuration``, issuer = the token server's base URL.
Each token request is logged with the auth method ("basic", "post", "client_secret_jwt",
"private_key_jwt", "federated", "tls_client_auth"), JWT alg/kid and claims, the form parameters but
secrets, and the X-*, Accept, Content-Type and User-Agent headers.
Admin API on the token server: ``POST /_admin/config`` (JSON object; only the given knobs
change, see ``KNOBS``), ``POST /_admin/reset``, ``POST /_admin/revoke``, ``GET /_admin/stats``.
"""

from __future__ import annotations

from .clients import Client
from .servers import DevServers
from .state import DEFAULT_CLIENTS
from .state import DEFAULT_USERS
from .state import KNOBS
from .state import State
from .state import token_id

__all__ = ["DEFAULT_CLIENTS", "DEFAULT_USERS", "KNOBS", "Client", "DevServers", "State", "token_id"]
