"""The 401 rules: which answers reject the token, and what to do about an answer."""

from __future__ import annotations

import pytest

from mitm_oauth2.challenge import dpop_nonce_asked
from mitm_oauth2.challenge import parse_challenges
from mitm_oauth2.challenge import scope_wanted
from mitm_oauth2.challenge import token_rejected
from mitm_oauth2.replay import Action
from mitm_oauth2.replay import decide
from tests.unit.replay_fakes import INVALID
from tests.unit.replay_fakes import answer
from tests.unit.replay_fakes import rejected_flow

# --- which answers reject the token ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "challenges", "rejected"),
    [
        (401, [], True),
        (401, [""], True),  # an empty header is no challenge
        (401, [INVALID], True),
        (401, ['Bearer realm="api", error="invalid_token", error_description="expired"'], True),
        (401, ["bearer error=invalid_token"], True),  # scheme case, token form
        (401, ["Bearer"], True),  # RFC 6750 §3.1: the error code is optional
        (401, ['Bearer realm="api"'], True),
        (401, ['Basic realm="x", Bearer error="invalid_token"'], True),
        (401, ['Basic realm="x"', INVALID], True),
        (401, ['Bearer realm="a, b=c", error="invalid_token"'], True),  # comma in a quoted value
        (401, [r'Bearer realm="x\"y", error="invalid_token"'], True),  # escaped quote
        (401, ['Bearer error="invalid_request"'], False),
        (401, ['Bearer error="insufficient_scope"'], False),
        (401, ['Basic realm="x"'], False),  # wants other credentials
        (401, ['Bearer error="invalid_request", Basic realm="x"'], False),
        (403, ['Bearer error="insufficient_scope", scope="write"'], False),
        (403, [], False),
        (200, [], False),
        (500, [INVALID], False),
        (401, ['DPoP error="invalid_token"'], True),  # RFC 9449 §7.1: the same error codes
        (401, ['DPoP algs="ES256", error="use_dpop_nonce"'], False),  # see dpop_nonce_asked
    ],
)
def test_token_rejected(status: int, challenges: list[str], rejected: bool) -> None:
    assert token_rejected(answer(status, *challenges)) is rejected


@pytest.mark.parametrize(
    ("status", "challenge", "nonce", "asked"),
    [
        (401, 'DPoP error="use_dpop_nonce"', "n-1", "n-1"),
        (401, 'DPoP error="use_dpop_nonce"', None, None),  # asked, but none given
        (401, 'DPoP error="invalid_token"', "n-1", None),  # a new nonce, but the token is bad
        (401, 'Bearer error="use_dpop_nonce"', "n-1", None),
        (400, 'DPoP error="use_dpop_nonce"', "n-1", None),
    ],
)
def test_dpop_nonce_asked(
    status: int, challenge: str, nonce: str | None, asked: str | None
) -> None:
    response = answer(status, challenge)
    if nonce is not None:
        response.headers["DPoP-Nonce"] = nonce
    assert dpop_nonce_asked(response) == asked


@pytest.mark.parametrize(
    ("status", "challenges", "wanted"),
    [
        (403, ['Bearer error="insufficient_scope", scope="write admin"'], ("write", "admin")),
        (401, ['Bearer realm="x", error="insufficient_scope", scope="write"'], ("write",)),
        (403, ['Bearer error="insufficient_scope"'], ()),  # names none
        (403, ['Basic realm="x", DPoP error="insufficient_scope", scope="w"'], ("w",)),
        (403, ['Basic realm="x"'], None),
        (403, [], None),
        (401, [INVALID], None),
        (400, ['Bearer error="insufficient_scope", scope="write"'], None),
    ],
)
def test_scope_wanted(status: int, challenges: list[str], wanted: tuple[str, ...] | None) -> None:
    assert scope_wanted(answer(status, *challenges)) == wanted


def test_parse_challenges() -> None:
    values = [r'Basic realm="x", Bearer realm="a, \"b\"", ERROR=invalid_token', "Negotiate abc=="]
    assert parse_challenges(values) == [
        ("basic", {"realm": "x"}),
        ("bearer", {"realm": 'a, "b"', "error": "invalid_token"}),
        ("negotiate", {"abc": "="}),  # a token68 credential: a param nobody reads
    ]
    assert parse_challenges(["@@@", ', , Bearer error="x"']) == [("bearer", {"error": "x"})]
    assert parse_challenges(['Bearer error="invalid_token']) == [
        ("bearer", {"error": '"invalid_token'})  # unterminated: taken as is, so not a match
    ]


# --- what to do about an answer --------------------------------------------------------------


def test_decide_replays_a_rejected_token() -> None:
    assert decide(rejected_flow(INVALID), retry_on_401=True)[0] is Action.REPLAY
    assert decide(rejected_flow(), retry_on_401=True)[0] is Action.REPLAY


@pytest.mark.parametrize(
    ("change", "action"),
    [
        (lambda f: setattr(f.response, "status_code", 403), Action.PASS),
        (lambda f: f.response.headers.__setitem__("WWW-Authenticate", "Basic"), Action.PASS),
        (lambda f: setattr(f, "is_replay", "request"), Action.PASS),
        (lambda f: f.metadata["oauth2"].__setitem__("replay_of", "abc"), Action.PASS),
        (lambda f: setattr(f.request, "stream", True), Action.EVICT),
        (lambda f: setattr(f.request, "raw_content", None), Action.EVICT),
        (lambda f: setattr(f.response, "stream", True), Action.EVICT),
    ],
    ids=["403", "basic", "replay", "replay_of", "stream", "no-content", "response-stream"],
)
def test_decide_exceptions(change, action: Action) -> None:
    f = rejected_flow(INVALID)
    change(f)
    assert decide(f, retry_on_401=True)[0] is action


def test_decide_retry_on_401_off() -> None:
    assert decide(rejected_flow(INVALID), retry_on_401=False) == (
        Action.PASS,
        "retry_on_401 is off",
    )
