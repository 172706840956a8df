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

PROOF_REDACTED = b"[redacted]"
_DPOP = b"dpop"


def redact(flow: http.HTTPFlow, backend: BackendConfig) -> None:
    """Replaces the token (and a DPoP proof) on `flow`'s request, if the addon injected one.

    `backend` is the flow's backend as configured now: a reload that renamed the header of a
    backend while one of its requests was on its way would leave that request's header as sent.
    """
    meta = flow.metadata.get("oauth2")
    fingerprint = meta.get("fingerprint") if isinstance(meta, dict) else None
    if fingerprint is None:
        return
    name = backend.header.lower().encode()
    value = backend.header_format.replace("{token}", f"[redacted {fingerprint}]").encode()
    proof = backend.grant.credentials.dpop is not None
    headers = flow.request.headers
    # One pass over the raw fields: every response runs this, and each lookup or assignment
    # through the Headers mapping costs as much as the whole pass.
    fields = []
    for key, sent in headers.fields:
        lower = key.lower()
        if lower == name:
            sent = value
        elif proof and lower == _DPOP:
            sent = PROOF_REDACTED
        fields.append((key, sent))
    headers.fields = tuple(fields)
