"""Each matched flow tells its token story: JSON-safe `flow.metadata["oauth2"]` and a one-line
`flow.comment`, which mitmweb and the console show and `~meta` / `~comment` filters find.

The comment leads with the token's state, so mitmweb's narrow Comment column still tells it:
`cache · 3480 s left · orders · aud orders-api · scope read`, `refused · <cause> · orders`.
Never the token itself: only a short fingerprint in the metadata, enough to tell two tokens
apart, and what a JWT token says of itself (`claims`: decoded, not verified; "opaque" else).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mitmproxy import http

from .model.claims import shown
from .tokens.broker import Issued

if TYPE_CHECKING:  # replay imports this module to tell a replay's story
    from .challenge import ScopeRefusal
    from .learning import Lesson
    from .replay import Outcome

# mitmweb shows a marker as text: the character mitmproxy's emoji table gives its name (🔴 for
# an unknown name), so ":no_entry:" (⛔) is an empty box without an emoji font. ":default:" is
# ● (U+25CF BLACK CIRCLE), which ordinary text fonts have; the console shows it as its mark too.
REFUSED_MARKER = ":default:"


def matched(flow: http.HTTPFlow, backend: str) -> None:
    """The request is for `backend` and waits for its token."""
    flow.metadata["oauth2"] = {"backend": backend}


def issued(
    flow: http.HTTPFlow, backend: str, issue: Issued, header: str, *, proof: bool = False
) -> None:
    """The token on its way: `header` is the one it goes in, `proof` whether a DPoP proof goes
    with it (what redaction replaces, whatever the configuration says by then)."""
    source = issue.source
    if issue.renewing:
        source += ", refreshing ahead"
    claims = issue.token.claims
    meta = flow.metadata["oauth2"] = {
        "backend": backend,
        "source": source,
        "token_age_s": round(issue.age, 1),
        "token_left_s": round(issue.left, 1),
        "fingerprint": issue.token.fingerprint,
        "claims": shown(claims),
        "header": header,
    }
    if proof:
        meta["dpop_proof"] = True
    comment = f"{source} · {issue.left:.0f} s left · {backend}"
    flow.comment = f"{comment} · {claims.summary}" if claims and claims.summary else comment


def for_caller(flow: http.HTTPFlow, caller: str) -> None:
    """token_exchange: the token went for the caller whose token has this fingerprint (the
    caller's token itself no longer is on the request)."""
    flow.metadata["oauth2"]["caller"] = caller


def phantom_asked(flow: http.HTTPFlow, backend: str) -> None:
    """A client's own token request to `backend`'s token endpoint: answered here."""
    flow.metadata["oauth2"] = {"backend": backend, "phantom_grant": True}


def phantom_issued(flow: http.HTTPFlow, backend: str, issue: Issued) -> None:
    """The client got a phantom token for the real one, which has `issue.left` seconds."""
    flow.metadata["oauth2"]["source"] = issue.source
    flow.metadata["oauth2"]["token_left_s"] = round(issue.left, 1)
    _comment(flow, "phantom issued", f"for the {issue.source} token, {issue.left:.0f} s", backend)


def phantom_refused(flow: http.HTTPFlow, backend: str, why: str) -> None:
    flow.metadata["oauth2"]["error"] = why
    flow.marked = REFUSED_MARKER
    _comment(flow, "phantom refused", why, backend)


def refused(flow: http.HTTPFlow, backend: str, cause: str) -> None:
    flow.metadata.setdefault("oauth2", {"backend": backend})["error"] = cause
    flow.marked = REFUSED_MARKER
    _comment(flow, "refused", cause, backend)


def after_401(flow: http.HTTPFlow, outcome: Outcome) -> None:
    """What the 401 led to: no replay and why, a replay that failed, or the caller's answer came
    through one replay with a fresh token."""
    meta = flow.metadata["oauth2"]
    if outcome.not_replayed is not None:
        meta["no_replay"] = outcome.not_replayed
    if outcome.replay_error is not None:
        meta["replay_error"] = outcome.replay_error
    if outcome.replayed:
        meta["replayed"] = True
        meta["source"] = "renewed after 401"
        status = flow.response.status_code if flow.response else "no answer"
        _comment(flow, "renewed after 401", f"replayed once: {status}", meta["backend"])


def scope_refused(flow: http.HTTPFlow, backend: str, refusal: ScopeRefusal) -> None:
    """The backend took the token as valid but wants more scope: nothing was renewed or
    replayed; the caller has the backend's answer."""
    flow.metadata["oauth2"]["insufficient_scope"] = {
        "wanted": list(refusal.wanted),
        "token_has": list(refusal.has),
    }
    _comment(flow, "insufficient scope", refusal.describe(), backend)


def learned(flow: http.HTTPFlow, lesson: Lesson) -> None:
    """A 401 from a host no backend names, with metadata saying how to get its tokens."""
    if lesson.learned is None:
        flow.metadata["oauth2"] = {"not_learned": lesson.refused}
        _comment(flow, "not learned", lesson.refused or "", lesson.host)
        return
    flow.metadata["oauth2"] = {
        "learned": {
            "resource": lesson.learned.resource,
            "issuer": lesson.learned.issuer,
            "scopes": list(lesson.learned.scopes),
        }
    }
    detail = f"oauth.suggest has a [[backend]] for it, tokens of {lesson.learned.issuer}"
    _comment(flow, "learned", detail, lesson.host)


def replay_of(flow: http.HTTPFlow, original_id: str) -> None:
    """One of our replays: its answer went to the flow `original_id`."""
    flow.metadata.setdefault("oauth2", {})["replay_of"] = original_id


def _comment(flow: http.HTTPFlow, state: str, detail: str, backend: str) -> None:
    """state · detail · backend: what matters most first (`issued` writes it in one go)."""
    flow.comment = f"{state} · {detail} · {backend}"
