"""The authorization server's handler: the client-credentials token endpoint (RFC 6749 §4.4,
client authentication per §2.3.1) and the admin API."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from typing import Any

from .httpd import JSON
from .httpd import Handler
from .state import token_id

Reply = tuple[int, dict[str, Any], dict[str, str]]


def _error(status: int, code: str, description: str) -> Reply:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="devserver"'
    return status, {"error": code, "error_description": description}, headers


def _decode_basic(value: str) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: base64, split on the first ':', then form-urldecode each part."""
    scheme, _, encoded = value.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError
        return None
    user, sep, password = decoded.partition(":")
    if scheme.lower() != "basic" or not sep:
        return None
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)


class TokenHandler(Handler):
    def do_GET(self) -> None:
        self._read_body()
        if urllib.parse.urlsplit(self.path).path == "/_admin/stats":
            self._send(200, self.server.state.stats(), {})
        else:
            self._send(404, {"error": "not_found"}, {})

    def do_POST(self) -> None:
        raw, path = self._read_body(), urllib.parse.urlsplit(self.path).path
        state = self.server.state
        if raw is None:
            self._send(*_error(400, "invalid_request", "unreadable body"))
        elif path == "/token":
            self._token(raw)
        elif path == "/_admin/config":
            try:
                changes = json.loads(raw or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                self._send(200, state.configure(changes), {})
            except ValueError as e:
                self._send(400, {"error": str(e)}, {})
        elif path in ("/_admin/reset", "/_admin/revoke"):
            (state.reset if path == "/_admin/reset" else state.revoke)()
            self._send(200, {"ok": True}, {})
        else:
            self._send(404, {"error": "not_found"}, {})

    def _token(self, raw: bytes) -> None:
        state, knobs = self.server.state, self.server.state.configure({})
        state.arrive()
        entry: dict[str, Any] = {"time": time.time(), "auth": None, "client_id": None}
        status, fields, headers = self._authorize(raw, entry)
        time.sleep(knobs["delay"])
        body: object = fields
        if knobs["down"]:
            status, self.close_connection = 0, True  # close without answering
        elif knobs["status"] is not None or knobs["body"] is not None:
            status = 200 if knobs["status"] is None else knobs["status"]
            body = {"error": "server_error"} if knobs["body"] is None else knobs["body"].encode()
            headers = {"Cache-Control": "no-store"}
        elif status == 200:
            token = state.issue(knobs["expires_in"])
            issued = {"access_token": token, "token_type": knobs["token_type"]}
            fields = {**issued, "expires_in": knobs["expires_in"], **fields}
            body = {k: v for k, v in fields.items() if v is not None}
            entry["token_id"] = token_id(token)
        if knobs["retry_after"] is not None:
            headers["Retry-After"] = str(knobs["retry_after"])
        entry["status"] = status or None
        state.record("token", entry)  # before answering: stats are current for the client
        if status:
            self._send(status, body, headers, knobs["content_type"] or JSON)

    def _authorize(self, raw: bytes, entry: dict[str, Any]) -> Reply:
        try:
            pairs = urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return _error(400, "invalid_request", "body is not a valid form")
        form = dict(pairs)
        entry.update(form_keys=sorted(form), grant_type=form.get("grant_type"))
        entry["scope"] = form.get("scope")
        auth_headers = self.headers.get_all("Authorization") or []
        if len(form) != len(pairs) or len(auth_headers) > 1:
            return _error(400, "invalid_request", "repeated parameter or header")
        if auth_headers:
            entry["auth"] = auth_headers[0].partition(" ")[0].lower()  # "basic", normally
            if "client_secret" in form:
                return _error(400, "invalid_request", "more than one client authentication")
            creds = _decode_basic(auth_headers[0])
            if creds is None:
                return _error(401, "invalid_client", "malformed Basic credentials")
            if form.get("client_id", creds[0]) != creds[0]:
                return _error(400, "invalid_request", "client_id differs from Basic credentials")
        elif "client_secret" in form:
            entry["auth"] = "post"
            creds = (form.get("client_id", ""), form["client_secret"])
        else:
            return _error(401, "invalid_client", "no client authentication")
        entry["client_id"] = creds[0]
        if not self.server.state.check_client(*creds):
            return _error(401, "invalid_client", "unknown client or wrong secret")
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "only client_credentials is supported")
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        return 200, {"scope": form.get("scope")}, headers
