"""The authorization server's handler: the token endpoint (the client-credentials grant, RFC
6749 §4.4, the JWT-bearer grant, RFC 7523 §2.1, token exchange, RFC 8693, of the tokens it
issued, the refresh-token grant, §6, with rotation and reuse detection, and the password grant,
§4.3; client authentication in authn.py), its metadata (RFC 8414, OpenID Connect Discovery)
and the admin API (POST /_admin/refresh-token stands in for a user's sign-in)."""

from __future__ import annotations

import json
import select
import socket
import ssl
import time
import urllib.parse
from typing import Any

from . import dpop
from .authn import AUTH_METHODS
from .authn import HMAC_ALGORITHMS
from .authn import JWT_BEARER_GRANT
from .authn import KEY_ALGORITHMS
from .authn import AuthFailure
from .authn import Presented
from .authn import authenticate
from .authn import authorize_bearer_grant
from .httpd import JSON
from .httpd import Handler
from .state import token_id

Reply = tuple[int, dict[str, Any], dict[str, str]]
TOKEN_PATH = "/token"
MTLS_TOKEN_PATH = "/mtls/token"  # the mtls_endpoint_aliases token endpoint (RFC 8705 §5)
RFC8414_PATH = "/.well-known/oauth-authorization-server"
OPENID_PATH = "/.well-known/openid-configuration"
# Logged with every token request, besides any X-* header.
RECORDED_HEADERS = frozenset({"accept", "content-type", "user-agent"})
# Never logged (the token ids of the exchange's tokens are).
SECRET_PARAMS = frozenset(
    {"client_secret", "client_assertion", "assertion", "subject_token", "actor_token"}
    | {"refresh_token", "password"}
)
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
GRANTS = ("client_credentials", JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT, "refresh_token", "password")
USER_GRANTS = ("refresh_token", "password")
REPEATABLE_PARAMS = frozenset({"resource"})  # RFC 8707 §2


def _error(status: int, code: str, description: str) -> Reply:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="devserver"'
    return status, {"error": code, "error_description": description}, headers


class TokenHandler(Handler):
    def do_GET(self) -> None:
        self._read_body()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_admin/stats":
            self._send(200, self.server.state.stats(), {})
        elif path in (RFC8414_PATH, OPENID_PATH):
            self._metadata(path)
        else:
            self._send(404, {"error": "not_found"}, {})

    def do_POST(self) -> None:
        raw, path = self._read_body(), urllib.parse.urlsplit(self.path).path
        state = self.server.state
        if raw is None:
            self._send(*_error(400, "invalid_request", "unreadable body"))
        elif path in (TOKEN_PATH, MTLS_TOKEN_PATH):
            self._token(raw, path)
        elif path == "/_admin/config":
            try:
                changes = json.loads(raw or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                self._send(200, state.configure(changes), {})
            except ValueError as e:
                self._send(400, {"error": str(e)}, {})
        elif path == "/_admin/refresh-token":
            asked = json.loads(raw or b"{}")
            client_id = asked.get("client_id") if isinstance(asked, dict) else None
            if client_id not in state.clients:
                self._send(400, {"error": "unknown client_id"}, {})
            else:
                self._send(200, {"refresh_token": state.issue_refresh(client_id)}, {})
        elif path in ("/_admin/reset", "/_admin/revoke"):
            (state.reset if path == "/_admin/reset" else state.revoke)()
            self._send(200, {"ok": True}, {})
        else:
            self._send(404, {"error": "not_found"}, {})

    def _metadata(self, path: str) -> None:
        state = self.server.state
        knobs = state.configure({})
        served = knobs["metadata_rfc8414"] if path == RFC8414_PATH else knobs["metadata_openid"]
        state.record("metadata", {"path": path, "status": 200 if served else 404})
        if not served:
            self._send(404, {"error": "not_found"}, {})
            return
        base, mtls = self.server.base_url, self.server.verifies_clients
        document: dict[str, Any] = {
            "issuer": knobs["metadata_issuer"] or base,
            "token_endpoint": base + TOKEN_PATH,
            "grant_types_supported": list(GRANTS),
            "token_endpoint_auth_methods_supported": list(
                AUTH_METHODS if mtls else AUTH_METHODS[:-1]
            ),
            "token_endpoint_auth_signing_alg_values_supported": [
                *HMAC_ALGORITHMS,
                *KEY_ALGORITHMS,
            ],
        }
        if mtls:
            document["mtls_endpoint_aliases"] = {"token_endpoint": base + MTLS_TOKEN_PATH}
        self._send(200, document, {})

    def _token(self, raw: bytes, path: str) -> None:
        state, knobs = self.server.state, self.server.state.configure({})
        state.arrive()
        entry: dict[str, Any] = {"time": time.time(), "path": path, "auth": None}
        entry["client_id"] = None
        # Slow before it acts: a client that gave up meanwhile has spent nothing (a refresh
        # token, say), as its request is dropped unanswered.
        time.sleep(knobs["delay"])
        if knobs["delay"] and self._client_gone():
            self.close_connection = True
            return
        status, fields, headers = self._authorize(raw, path, entry)
        jkt = None
        if status == 200 and self.headers.get("DPoP") is not None:
            status, fields, jkt = self._dpop(path, knobs, entry, fields)
        if knobs["dpop_nonce"] is not None:
            headers["DPoP-Nonce"] = knobs["dpop_nonce"]
        body: object = fields
        if knobs["down"]:
            status, self.close_connection = 0, True  # close without answering
        elif knobs["echo_auth"] and knobs["status"] is not None:
            status, headers = knobs["status"], {"Cache-Control": "no-store"}
            body = {"error": "invalid_client", "error_description": self._echo(raw)}
        elif knobs["status"] is not None or knobs["body"] is not None:
            status = 200 if knobs["status"] is None else knobs["status"]
            body = {"error": "server_error"} if knobs["body"] is None else knobs["body"].encode()
            headers = {"Cache-Control": "no-store"}
        elif status == 200:
            client = state.clients.get(entry["client_id"] or "")
            bound = (
                client is not None
                and client.certificate_bound
                and entry["auth"] == "tls_client_auth"
            )
            binding = entry.get("cert_sha256") if bound else None
            entry["bound"] = binding is not None
            claims = self._claims(knobs, entry, fields) if knobs["jwt_tokens"] else None
            token = state.issue(knobs["expires_in"], knobs["token_prefix"], binding, jkt, claims)
            token_type = "DPoP" if jkt is not None else knobs["token_type"]
            issued = {"access_token": token, "token_type": token_type}
            if entry["grant_type"] == TOKEN_EXCHANGE_GRANT:
                issued["issued_token_type"] = ACCESS_TOKEN_TYPE
            if entry["grant_type"] in USER_GRANTS and (
                entry["grant_type"] == "password" or knobs["rotate_refresh_tokens"]
            ):
                client_id = str(entry["client_id"])
                issued["refresh_token"] = state.issue_refresh(client_id, entry["sign_in"])
            fields = {**issued, "expires_in": knobs["expires_in"], **fields}
            body = {k: v for k, v in fields.items() if v is not None}
            entry["token_id"] = token_id(token)
        if knobs["retry_after"] is not None:
            headers["Retry-After"] = str(knobs["retry_after"])
        entry["status"] = status or None
        state.record("token", entry)  # before answering: stats are current for the client
        if status:
            self._send(status, body, headers, knobs["content_type"] or JSON)

    def _claims(
        self, knobs: dict[str, Any], entry: dict[str, Any], fields: dict[str, Any]
    ) -> dict[str, Any]:
        """A JWT access token's claims (RFC 9068 §2.2); `exp` from expires_in when it is set."""
        expires_in = knobs["expires_in"]
        return {
            "iss": knobs["metadata_issuer"] or self.server.base_url,
            "sub": entry["client_id"],
            "aud": knobs["token_audience"],
            "scope": fields.get("scope"),
            "client_id": entry["client_id"],
            "exp": None if expires_in is None else int(time.time()) + expires_in,
        }

    def _dpop(
        self, path: str, knobs: dict[str, Any], entry: dict[str, Any], fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any], str | None]:
        """RFC 9449 §5: the request's DPoP proof, and the server's nonce when one is wanted.
        (status, fields, the key thumbprint to bind the token to)."""
        try:
            claims, jkt = dpop.verify(self.headers["DPoP"], "POST", self.server.base_url + path)
        except dpop.ProofError as e:
            return 400, {"error": "invalid_dpop_proof", "error_description": str(e)}, None
        entry["dpop"] = {"jkt": jkt, "nonce": claims.get("nonce"), "jti": claims["jti"]}
        if not self.server.state.use_jti("dpop", str(claims["jti"])):
            return 400, {"error": "invalid_dpop_proof", "error_description": "jti reused"}, None
        wanted = knobs["dpop_nonce"]
        if wanted is not None and claims.get("nonce") != wanted:
            return 400, {"error": "use_dpop_nonce", "error_description": "nonce needed"}, None
        return 200, fields, jkt

    def _echo(self, raw: bytes) -> str:
        """What the client sent to authenticate, raw and decoded (the `echo_auth` knob)."""
        form = dict(urllib.parse.parse_qsl(raw.decode(errors="replace")))
        sent = [*(self.headers.get_all("Authorization") or []), raw.decode(errors="replace")]
        sent += [form[name] for name in sorted(SECRET_PARAMS) if name in form]
        return "you sent: " + " | ".join(sent)

    def _authorize(self, raw: bytes, path: str, entry: dict[str, Any]) -> Reply:
        try:
            pairs = urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return _error(400, "invalid_request", "body is not a valid form")
        params: dict[str, list[str]] = {}
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        form = {name: values[0] for name, values in params.items()}
        entry.update(form_keys=sorted(params), grant_type=form.get("grant_type"))
        entry.update(scope=form.get("scope"), audience=form.get("audience"))
        entry["resource"] = params.get("resource", [])
        entry["params"] = {k: v for k, v in params.items() if k not in SECRET_PARAMS}
        entry["headers"] = self._recorded_headers()
        if any(len(v) > 1 for k, v in params.items() if k not in REPEATABLE_PARAMS):
            return _error(400, "invalid_request", "repeated parameter or header")
        presented = Presented(
            form=form,
            authorization=self.headers.get_all("Authorization") or [],
            peer_cert=self._peer_cert(),
            audiences=self._audiences(path),
        )
        grant = form.get("grant_type")
        if grant not in GRANTS:
            return _error(400, "unsupported_grant_type", f"unsupported grant_type {grant!r}")
        try:
            if grant == JWT_BEARER_GRANT:
                authorize_bearer_grant(self.server.state, presented, entry)
            else:
                authenticate(self.server.state, presented, entry)
        except AuthFailure as e:
            return _error(e.status, e.code, e.description)
        if grant == TOKEN_EXCHANGE_GRANT:
            refused = self._exchange(form, entry)
            if refused is not None:
                return refused
        if grant in USER_GRANTS:
            refused = self._user(form, entry)
            if refused is not None:
                return refused
        scope = form.get("scope") or (entry.get("grant_assertion") or {}).get("scope")
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        return 200, {"scope": scope}, headers

    def _exchange(self, form: dict[str, str], entry: dict[str, Any]) -> Reply | None:
        """RFC 8693 §2.1: the subject token must be an access token this server issued and
        that is still valid (knob `exchange_error` refuses every exchange with that code)."""
        subject, actor = form.get("subject_token"), form.get("actor_token")
        entry["subject_token_id"] = token_id(subject) if subject else None
        entry["actor_token_id"] = token_id(actor) if actor else None
        forced = self.server.state.configure({})["exchange_error"]
        if forced is not None:
            return _error(400, forced, "refused by the exchange_error knob")
        if not subject:
            return _error(400, "invalid_request", "subject_token is missing")
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            return _error(400, "invalid_request", "subject_token_type must be access_token")
        if actor is not None and not form.get("actor_token_type"):
            return _error(400, "invalid_request", "actor_token without actor_token_type")
        if not self.server.state.token_valid(subject):
            return _error(400, "invalid_grant", "subject_token is not valid")
        return None

    def _client_gone(self) -> bool:
        """Whether the client closed its connection (plain HTTP only: TLS cannot peek)."""
        if isinstance(self.connection, ssl.SSLSocket):
            return False
        readable, _, _ = select.select([self.connection], [], [], 0)
        try:
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _user(self, form: dict[str, str], entry: dict[str, Any]) -> Reply | None:
        """The user's refresh token (a live one of this client) or name and password; the
        sign-in is kept in `entry` for the refresh token issued with the answer."""
        state, client_id = self.server.state, str(entry["client_id"])
        if form.get("grant_type") == "password":
            if not state.check_user(form.get("username", ""), form.get("password", "")):
                return _error(400, "invalid_grant", "wrong username or password")
            entry["sign_in"] = None
            return None
        knobs = state.configure({})
        # A failure the knobs force answers in place of the token: nothing is spent for it.
        forced = knobs["down"] or knobs["status"] is not None or knobs["body"] is not None
        sign_in = state.use_refresh(form.get("refresh_token", ""), client_id, spend=not forced)
        if sign_in is None:
            return _error(400, "invalid_grant", "refresh token not valid (revoked or used)")
        entry["sign_in"] = sign_in
        return None

    def _recorded_headers(self) -> dict[str, list[str]]:
        recorded: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            if name.lower().startswith("x-") or name.lower() in RECORDED_HEADERS:
                recorded.setdefault(name.lower(), []).append(value)
        return recorded

    def _peer_cert(self) -> bytes | None:
        """The client certificate (DER), which the handshake verified against the client CA."""
        if isinstance(self.connection, ssl.SSLSocket):
            return self.connection.getpeercert(binary_form=True)
        return None

    def _audiences(self, path: str) -> tuple[str, ...]:
        """RFC 7523 §3: the token endpoint, as the client addressed it or as we name it, or the
        issuer identifier."""
        base = self.server.base_url
        scheme = base.partition(":")[0]
        addressed = f"{scheme}://{self.headers.get('Host', '')}{path}"
        return (addressed, base + path, base)
