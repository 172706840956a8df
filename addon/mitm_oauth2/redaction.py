"""No live token at rest: once a request has gone upstream, the flow's copy of what the addon
put on it reads `Bearer [redacted <fingerprint>]` (a DPoP proof `[redacted]`), so mitmweb's
flow view, saved flows (`-w`), HAR exports and mitmdump's dumps hold no token that works. The
token went out on the wire; mitmproxy's raw trace of the bytes sent (`proxy_debug`) shows it.
A refused request to a backend that takes its caller's own token keeps no copy of it either.

The addon's `response` and `error` hooks call this last: a script addon runs ahead of
mitmproxy's save, savehar, dumper and view addons, so none of them sees the live token.
"""

from __future__ import annotations

from collections.abc import Mapping

from mitmproxy import http

from .config.backend import BackendConfig
from .model.token import fingerprint

PROOF_REDACTED = b"[redacted]"
_DPOP = b"dpop"


def redact(flow: http.HTTPFlow, backends: Mapping[str, BackendConfig]) -> None:
    """Replaces the token (and a DPoP proof) on `flow`'s request, if the addon injected one:
    in the header it went in, as `story.issued` noted it. `backends`: by name, as configured
    now, for the header's format; when a reload removed the flow's backend, the whole value is
    replaced."""
    meta = flow.metadata.get("oauth2")
    if not isinstance(meta, dict):
        return
    header, fingerprint = meta.get("header"), meta.get("fingerprint")
    if not isinstance(header, str) or fingerprint is None:
        return
    name = header.lower()
    redacted = f"[redacted {fingerprint}]"
    backend = backends.get(meta.get("backend", ""))
    if backend is not None and backend.header.lower() == name:
        redacted = backend.header_format.replace("{token}", redacted)
    value, wanted = redacted.encode(), name.encode()
    proof = meta.get("dpop_proof") is True
    headers = flow.request.headers
    # One pass over the raw fields: every response runs this, and each lookup or assignment
    # through the Headers mapping costs as much as the whole pass.
    fields = []
    for key, sent in headers.fields:
        lower = key.lower()
        if lower == wanted:
            sent = value
        elif proof and lower == _DPOP:
            sent = PROOF_REDACTED
        fields.append((key, sent))
    headers.fields = tuple(fields)


def redact_presented(request: http.Request, header: str) -> None:
    """A refused request to a backend that takes the caller's own token (token exchange's
    subject token, a phantom token) is never forwarded, so its copy of that token can go at
    once: `Bearer [redacted <fingerprint>]`, the fingerprint of the caller's token that the
    flows sent for it show."""
    wanted = header.lower().encode()
    fields = []
    for key, value in request.headers.fields:
        if key.lower() == wanted:
            scheme, space, token = value.partition(b" ")
            if not (space and scheme.lower() == b"bearer"):
                scheme, token = b"", value
            shown = b"[redacted " + fingerprint(token.decode("latin-1")).encode() + b"]"
            value = scheme + b" " + shown if scheme else shown
        fields.append((key, value))
    request.headers.fields = tuple(fields)


def strip(flow: http.HTTPFlow) -> None:
    """Takes the token (and a DPoP proof) off a copy of `flow` that is to be sent again: its
    own requestheaders puts fresh ones on it, and clientplayback's backup of the copy (saved
    with it) must not keep the old ones. The copy's story starts anew."""
    meta = flow.metadata.pop("oauth2", None)
    if not isinstance(meta, dict) or "header" not in meta:
        return
    flow.request.headers.pop(str(meta["header"]), None)
    if meta.get("dpop_proof") is True:
        flow.request.headers.pop("DPoP", None)
