"""The protected backend's handler: any method and path, answered 200 with an echo for a valid
Bearer token (or a bare token in the ``backend_header`` knob's header) and 401 otherwise (or a
forced status, see the ``backend_status`` knob); a certificate-bound token only on a connection
that presents its certificate; with the ``resource_metadata`` knob, its RFC 9728 metadata. Each
request is logged with its Authorization headers, the values of the token header as
``credential`` and the client certificate's SHA-256."""

from __future__ import annotations

import hashlib
import time

from . import dpop
from .httpd import Handler
from .state import token_id

METADATA_PATH = "/.well-known/oauth-protected-resource"


class BackendHandler(Handler):
    def _handle(self) -> None:
        raw = self._read_body()
        if raw is None:
            self._send(400, {"ok": False, "error": "unreadable body"}, {})
            return
        state, text = self.server.state, raw.decode("utf-8", "replace")
        knobs = state.configure({})
        document = knobs["resource_metadata"]
        if document is not None and self.path == METADATA_PATH:
            self._send(200, document, {})
            return
        name = knobs["backend_header"]
        authorization = self.headers.get_all("Authorization") or []
        values = self.headers.get_all(name) or []
        if name.lower() == "authorization":
            scheme, _, token = values[0].partition(" ") if len(values) == 1 else ("", "", "")
        else:  # e.g. X-Api-Key: the bare token
            scheme, token = "bearer", values[0] if len(values) == 1 else ""
        jkt = state.dpop_key(token) if token else None
        expected = "dpop" if jkt is not None else "bearer"  # RFC 9449 §7.1
        ok = scheme.lower() == expected and bool(token) and state.token_valid(token)
        wanted = knobs["backend_dpop_nonce"]
        dpop_error = self._dpop_error(token, jkt, wanted) if ok and jkt is not None else None
        ok = ok and dpop_error is None
        presented = self._client_certificate()
        binding = state.binding(token) if token else None
        mismatch = binding is not None and binding != presented
        ok = ok and not mismatch
        echo = {"method": self.command, "path": self.path, "body": text}
        host = self.headers.get("Host")
        forced, challenge = knobs["backend_status"], knobs["backend_challenge"]
        ok = ok and forced is None
        seen = {"authorization": authorization, "credential": values, "host": host, "ok": ok}
        seen["cert_sha256"] = presented
        seen["dpop_error"] = dpop_error
        state.record("backend", {**echo, **seen})
        time.sleep(knobs["backend_delay"])
        if forced is not None:
            headers = {"WWW-Authenticate": challenge} if challenge else {}
            self._send(forced, {"ok": False, **echo, "error": "forced"}, headers)
        elif ok:
            self._send(200, {"ok": True, **echo, "token_id": token_id(token)}, {})
        elif not values:
            asked = "Bearer"
            if document is not None:  # RFC 9728 §5.1
                asked += f' resource_metadata="{self.server.base_url}{METADATA_PATH}"'
            self._send(401, {"ok": False, "error": "no token"}, {"WWW-Authenticate": asked})
        else:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            error = "certificate mismatch" if mismatch else dpop_error or "invalid_token"
            if dpop_error == "use_dpop_nonce":
                challenge = {"WWW-Authenticate": 'DPoP error="use_dpop_nonce"'}
                challenge["DPoP-Nonce"] = str(wanted)
            elif jkt is not None:
                challenge = {"WWW-Authenticate": 'DPoP error="invalid_token"'}
            self._send(401, {"ok": False, "error": error}, challenge)

    def _dpop_error(self, token: str, jkt: str, nonce: str | None) -> str | None:
        """What is wrong with the DPoP proof of a request with a DPoP-bound token, if anything."""
        proofs = self.headers.get_all("DPoP") or []
        if len(proofs) != 1:
            return "one DPoP proof needed"
        url = self.server.base_url + self.path.split("?")[0].split("#")[0]
        try:
            claims, thumbprint = dpop.verify(proofs[0], self.command, url, access_token=token)
        except dpop.ProofError as e:
            return str(e)
        if thumbprint != jkt:
            return "DPoP proof is signed by another key than the token's"
        if not self.server.state.use_jti("dpop-backend", str(claims["jti"])):
            return "DPoP proof jti reused"
        if nonce is not None and claims.get("nonce") != nonce:
            return "use_dpop_nonce"
        return None

    def _client_certificate(self) -> str | None:
        """The SHA-256 of the client certificate this TLS connection presented, if any."""
        getpeercert = getattr(self.connection, "getpeercert", None)
        der = getpeercert(binary_form=True) if getpeercert is not None else None
        return hashlib.sha256(der).hexdigest() if der else None

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle
