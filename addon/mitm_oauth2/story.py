"""Each matched flow tells its token story: JSON-safe `flow.metadata["oauth2"]` and a one-line
`flow.comment`, which mitmweb and the console show and `~meta` / `~comment` filters find.

Never the token itself: only a short fingerprint, enough to tell two tokens apart.
"""

from __future__ import annotations

from mitmproxy import http

from .tokens import Issued

REFUSED_MARKER = ":no_entry:"


def issued(flow: http.HTTPFlow, backend: str, issue: Issued) -> None:
    source = issue.source
    if issue.renewing:
        source += ", refreshing ahead"
    flow.metadata["oauth2"] = {
        "backend": backend,
        "source": source,
        "token_age_s": round(issue.age, 1),
        "token_left_s": round(issue.left, 1),
        "fingerprint": issue.token.fingerprint,
    }
    _comment(flow, f"token {source}, {issue.age:.0f} s old, {issue.left:.0f} s left")


def refused(flow: http.HTTPFlow, cause: str) -> None:
    flow.metadata["oauth2"]["error"] = cause
    flow.marked = REFUSED_MARKER
    _comment(flow, f"no token, not forwarded: {cause}")


def replayed(flow: http.HTTPFlow) -> None:
    """After a 401: the answer the caller gets came through one replay with a fresh token."""
    meta = flow.metadata["oauth2"]
    meta["source"] = "renewed after 401"
    status = flow.response.status_code if flow.response else "no answer"
    _comment(flow, f"token rejected (401), renewed and replayed once: {status}")


def _comment(flow: http.HTTPFlow, text: str) -> None:
    backend = flow.metadata["oauth2"]["backend"]
    flow.comment = f"oauth2 {backend}: {text}"
