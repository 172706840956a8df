"""One grant per caller's token (token exchange): the same token finds the same grant, another
token another one; at most `limit` callers, the least recently seen forgotten first (and the
broker told); an expired JWT is refused before anything is asked."""

from __future__ import annotations

import base64
import json

import pytest

from mitm_oauth2.model.credentials import Exchange
from mitm_oauth2.model.credentials import GrantType
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.errors import CallerTokenRefused
from mitm_oauth2.store.base import derive_cache_key
from mitm_oauth2.tokens.subjects import SubjectGrants
from tests.unit.broker_fakes import START
from tests.unit.broker_fakes import FakeClock


def jwt_like(**claims: object) -> str:
    def part(document: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def seen(subjects: SubjectGrants, token: str) -> TokenGrant:
    """The grant for a caller that sends `Authorization: Bearer <token>`."""
    return subjects.grant(f"Bearer {token}".encode(), token)


@pytest.fixture
def template(make_grant) -> TokenGrant:
    return make_grant(grant=GrantType.TOKEN_EXCHANGE, exchange=Exchange())


def test_the_same_callers_token_finds_the_same_grant(template: TokenGrant) -> None:
    subjects = SubjectGrants(template, 10, lambda grant: None, FakeClock())
    first, again, other = seen(subjects, "alice"), seen(subjects, "alice"), seen(subjects, "bob")
    assert first is again
    assert other != first
    assert first.subject is not None
    assert first.subject.value == "alice"
    assert len(subjects) == 2


def test_a_caller_seen_before_is_known_by_what_it_presents(template: TokenGrant) -> None:
    subjects = SubjectGrants(template, 10, lambda grant: None, FakeClock())
    assert subjects.known(b"Bearer alice") is None
    alice = seen(subjects, "alice")
    assert subjects.known(b"Bearer alice") is alice
    assert subjects.known(b"Bearer bob") is None
    assert subjects.known(b"bearer alice") is None  # other bytes: read and checked again


def test_a_known_caller_whose_jwt_has_expired_is_refused(template: TokenGrant) -> None:
    clock = FakeClock()
    subjects = SubjectGrants(template, 10, lambda grant: None, clock)
    token = jwt_like(sub="alice", exp=START + 60)
    seen(subjects, token)
    clock.advance(61)
    with pytest.raises(CallerTokenRefused, match="expired"):
        subjects.known(f"Bearer {token}".encode())


def test_each_caller_has_a_cache_key_of_its_own_without_its_token(template) -> None:
    subjects = SubjectGrants(template, 10, lambda grant: None, FakeClock())
    keys = {derive_cache_key(b"k" * 32, seen(subjects, name)) for name in ("alice", "bob")}
    assert len(keys) == 2
    assert not any("alice" in key or "bob" in key for key in keys)


def test_the_least_recently_seen_caller_is_forgotten_first(template: TokenGrant) -> None:
    forgotten: list[TokenGrant] = []
    subjects = SubjectGrants(template, 2, forgotten.append, FakeClock())
    alice = seen(subjects, "alice")
    bob = seen(subjects, "bob")
    seen(subjects, "alice")  # seen again: bob is now the oldest
    seen(subjects, "carol")
    assert forgotten == [bob]
    assert seen(subjects, "alice") is alice
    assert len(subjects) == 2


def test_a_flood_of_callers_stays_within_the_bound(template: TokenGrant) -> None:
    forgotten: list[TokenGrant] = []
    subjects = SubjectGrants(template, 100, forgotten.append, FakeClock())
    for n in range(5000):
        seen(subjects, f"caller-{n}")
    assert len(subjects) == 100
    assert len(forgotten) == 4900


def test_a_lower_limit_applies_at_the_next_new_caller(template: TokenGrant) -> None:
    forgotten: list[TokenGrant] = []
    subjects = SubjectGrants(template, 10, forgotten.append, FakeClock())
    for n in range(10):
        seen(subjects, f"caller-{n}")
    subjects.limit = 3
    seen(subjects, "new")
    assert len(subjects) == 3
    assert len(forgotten) == 8


def test_an_expired_jwt_is_refused_and_a_live_one_keeps_its_expiry(template) -> None:
    clock = FakeClock()
    subjects = SubjectGrants(template, 10, lambda grant: None, clock)
    live = seen(subjects, jwt_like(sub="alice", exp=START + 60))
    assert live.subject is not None
    assert live.subject.expires == START + 60
    with pytest.raises(CallerTokenRefused, match="expired"):
        seen(subjects, jwt_like(sub="bob", exp=START - 1))
    clock.advance(61)
    with pytest.raises(CallerTokenRefused, match="expired"):
        seen(subjects, jwt_like(sub="alice", exp=START + 60))


def test_clear_forgets_every_caller(template: TokenGrant) -> None:
    forgotten: list[TokenGrant] = []
    subjects = SubjectGrants(template, 10, forgotten.append, FakeClock())
    grants = [seen(subjects, name) for name in ("alice", "bob")]
    subjects.clear()
    assert forgotten == grants
    assert len(subjects) == 0
