"""An RFC 7523 authorization server built on authlib's JWTBearerGrant (a maintained library's
implementation of the JWT-bearer grant, on its Flask integration), and a backend that serves
only the bearer tokens it issued.

``python -m tests.interop.authlib_server CLIENTS.json`` binds 127.0.0.1, prints one JSON line
with ``token_url`` and ``base_url`` and serves until SIGTERM. CLIENTS.json is a list of
``{"issuer": .., "public_key": PEM, "subjects": [..], "scope": "a b"}``: who may sign
assertions (`iss`), with which key, for which subjects (`sub`; none: only the issuer itself).

``GET /api/...`` answers 200 with the token's issuer, subject and scope, or 401;
``GET /_interop/log`` lists each token request: status, form keys, the assertion's header
and claims.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from importlib.metadata import version
from typing import Any

import jwt as pyjwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc7523 import JWTBearerGrant
from flask import Flask
from flask import jsonify
from flask import request
from werkzeug.serving import make_server

# authlib 1.7 moved to joserfc: the key resolver was renamed and the audience check changed.
OLD_AUTHLIB = tuple(int(part) for part in version("authlib").split(".")[:2]) < (1, 7)


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    issuer: str
    public_key: str
    subjects: list[str] = field(default_factory=list)
    scope: str = ""

    def get_client_id(self) -> str:
        return self.issuer

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == JWTBearerGrant.GRANT_TYPE


@dataclass
class State:
    token_url: str = ""
    clients: dict[str, Client] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


STATE = State()


class Grant(JWTBearerGrant):  # type: ignore[misc]
    def resolve_issuer_client(self, issuer: str) -> Client | None:
        return STATE.clients.get(issuer)

    def authenticate_user(self, subject: str) -> str | None:
        client: Client = self.request.client  # set from the assertion's issuer before this
        allowed = client.subjects or [client.issuer]
        return subject if subject in allowed else None

    def has_granted_permission(self, client: Client, user: str) -> bool:
        return True

    def get_audiences(self) -> list[str]:
        return [STATE.token_url]


if OLD_AUTHLIB:

    def _client_key(self: Grant, client: Client, headers: object, payload: object) -> str:
        return client.public_key

    Grant.resolve_client_key = _client_key
else:

    def _public_key(self: Grant, client: Client) -> str:
        return client.public_key

    Grant.resolve_client_public_key = _public_key


def save_token(token: dict[str, Any], oauth_request: Any) -> None:
    with STATE.lock:
        STATE.tokens[token["access_token"]] = {
            "issuer": oauth_request.client.issuer,
            "subject": oauth_request.user,
            "scope": token.get("scope", ""),
            "expires_at": time.time() + float(token.get("expires_in", 3600)),
        }


def make_app() -> Flask:
    app = Flask(__name__)
    server = AuthorizationServer(app, query_client=STATE.clients.get, save_token=save_token)
    server.register_grant(Grant)

    @app.post("/token")
    def token() -> Any:
        answer = server.create_token_response()
        entry: dict[str, Any] = {"status": answer.status_code, "form_keys": sorted(request.form)}
        entry["grant_type"] = request.form.get("grant_type")
        assertion = request.form.get("assertion")
        if assertion:
            entry["header"] = pyjwt.get_unverified_header(assertion)
            entry["claims"] = pyjwt.decode(assertion, options={"verify_signature": False})
        with STATE.lock:
            STATE.log.append(entry)
        return answer

    @app.get("/api/<path:rest>")
    def api(rest: str) -> Any:
        value = request.headers.get("Authorization", "")
        with STATE.lock:
            issued = STATE.tokens.get(value.removeprefix("Bearer "))
        if not value.startswith("Bearer ") or issued is None or issued["expires_at"] < time.time():
            return jsonify(error="invalid_token"), 401
        return jsonify(path=rest, **{k: issued[k] for k in ("issuer", "subject", "scope")})

    @app.get("/_interop/log")
    def log() -> Any:
        with STATE.lock:
            return jsonify(STATE.log)

    return app


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as file:
        specs = json.load(file)
    STATE.clients = {spec["issuer"]: Client(**spec) for spec in specs}
    http = make_server("127.0.0.1", 0, make_app(), threaded=True)
    base = f"http://127.0.0.1:{http.server_port}"
    STATE.token_url = f"{base}/token"
    if OLD_AUTHLIB:  # checks `aud` against its claims options, not get_audiences
        Grant.CLAIMS_OPTIONS = {
            **Grant.CLAIMS_OPTIONS,
            "aud": {"essential": True, "value": STATE.token_url},
        }
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=http.shutdown).start())
    print(json.dumps({"token_url": STATE.token_url, "base_url": base}), flush=True)
    http.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
