"""No live token at rest: once a request has gone upstream, the flow's copy of what the addon
put on it reads `Bearer [redacted <fingerprint>]` (a DPoP proof `[redacted]`), so mitmweb's
flow view, saved flows (`-w`), HAR exports and mitmdump's dumps hold no token that works. The
token went out on the wire; mitmproxy's raw trace of the bytes sent (`proxy_debug`) shows it.

The addon's `response` and `error` hooks call this last: a script addon runs ahead of
mitmproxy's save, savehar, dumper and view addons, so none of them sees the live token.
"""

from __future__ import annotations

from mitmproxy import http

from .config.backend import BackendConfig

PROOF_REDACTED = "[redacted]"


def redact(flow: http.HTTPFlow, backend: BackendConfig) -> None:
    """Replaces the token (and a DPoP proof) on `flow`'s request, if the addon injected one.

    `backend` is the flow's backend as configured now: a reload that renamed the header of a
    backend while one of its requests was on its way would leave that request's header as sent.
    """
    meta = flow.metadata.get("oauth2")
    fingerprint = meta.get("fingerprint") if isinstance(meta, dict) else None
    if fingerprint is None:
        return
    headers = flow.request.headers
    if backend.header in headers:
        redacted = backend.header_format.replace("{token}", f"[redacted {fingerprint}]")
        headers[backend.header] = redacted
    if backend.grant.credentials.dpop is not None and "DPoP" in headers:
        headers["DPoP"] = PROOF_REDACTED
