"""Acting as a user below the glue: the refresh-token grant (RFC 6749 §6) with a server that
rotates the refresh token and revokes the grant when a spent one comes back (RFC 9700 §4.14.2),
and the password grant (§4.3) that renews with its refresh token. The token request on the wire,
what the broker keeps in the store and when, one renewal at a time across processes, and a
refused refresh token answered once, not retried."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import ClientCredentials
from mitm_oauth2.model.credentials import GrantType
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.credentials import SubjectToken
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.credentials import UserGrant
from mitm_oauth2.model.errors import SignInRequired
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.model.token import TokenResponse
from mitm_oauth2.store.base import derive_cache_key
from mitm_oauth2.store.base import refresh_key
from mitm_oauth2.store.codec import TokenCodec
from mitm_oauth2.store.disk import DiskTokenStore
from mitm_oauth2.store.guard import GuardedStore
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import FakeClock
from tests.unit.broker_fakes import MemoryStore
from tests.unit.broker_fakes import settle
from tests.unit.client_helpers import GOOD
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import ask
from tests.unit.client_helpers import echoing
from tests.unit.client_helpers import form
from tests.unit.client_helpers import json_answer
from tests.unit.client_helpers import refused

pytestmark = pytest.mark.anyio

FIRST = "rt-given-once"
PASSWORD = "pa55: w0rd&=%"
LIFETIME = 60


class RotatingServer:
    """A token endpoint that rotates refresh tokens as oidc-provider does with
    rotateRefreshToken: each works once; a spent one presented again revokes the grant, and
    every refresh token of it with it. The password (no refresh token) starts a new grant."""

    def __init__(self, first: str | None = FIRST, rotates: bool = True) -> None:
        self.current = first
        self.rotates = rotates
        self.spent: set[str] = set()
        self.revoked = False
        self.issued = 0
        self.asked: list[str | None] = []
        self.gate: asyncio.Event | None = None

    async def request_token(
        self,
        credentials: ClientCredentials,
        subject: SubjectToken | None = None,
        refresh_token: str | None = None,
    ) -> TokenResponse:
        self.asked.append(refresh_token)
        if self.gate is not None:
            await self.gate.wait()
        if refresh_token is None:
            self.revoked, self.spent = False, set()
        elif self.revoked or refresh_token != self.current:
            if refresh_token in self.spent:
                self.revoked = True
            raise SignInRequired("refused (invalid_grant)", oauth_error="invalid_grant")
        elif self.rotates:
            self.spent.add(refresh_token)
        self.issued += 1
        if self.rotates or self.current is None:
            self.current = f"rt-{self.issued}"
        return TokenResponse(f"at-{self.issued}", "Bearer", LIFETIME, None, self.current)

    async def aclose(self) -> None:
        pass


def user_grant(
    grant: GrantType = GrantType.REFRESH_TOKEN, first: str | None = FIRST, **user: object
) -> TokenGrant:
    if grant is GrantType.PASSWORD:
        user = {"username": "alice", "password": Secret(PASSWORD), **user}
    else:
        user = {"refresh_token": Secret(first) if first else None, **user}
    credentials = ClientCredentials(
        client_id="proxy",
        token_url="https://idp.test/token",
        client_secret=Secret("s3cr3t"),
        grant=grant,
        user=UserGrant(**user),  # type: ignore[arg-type]
    )
    return TokenGrant("mail", credentials, 3600.0)


def renewal_due(clock: FakeClock) -> None:
    clock.advance(LIFETIME - 10)  # within the 30 s margin: renewed ahead, in the background


# --- the token request ---


async def test_a_refresh_token_request_carries_the_users_token_and_the_clients_proof() -> None:
    recorder = Recorder(json_answer(200, GOOD | {"refresh_token": "rt-next"}))
    response = await ask(recorder, user_grant(), FIRST)
    posted = form(recorder.requests[0])
    assert posted == {"grant_type": ["refresh_token"], "refresh_token": [FIRST]}
    assert recorder.requests[0].headers["Authorization"].startswith("Basic ")
    assert response.refresh_token == "rt-next"
    assert "rt-next" not in repr(response)


async def test_a_password_request_names_the_user_and_a_public_client_itself() -> None:
    grant = user_grant(GrantType.PASSWORD)
    public = dataclasses.replace(grant.credentials, auth_method=AuthMethod.NONE, client_secret=None)
    recorder = Recorder(json_answer(200, GOOD))
    await ask(recorder, dataclasses.replace(grant, credentials=public))
    posted = form(recorder.requests[0])
    assert posted == {
        "grant_type": ["password"],
        "username": ["alice"],
        "password": [PASSWORD],
        "client_id": ["proxy"],
    }
    assert "Authorization" not in recorder.requests[0].headers


async def test_a_refused_refresh_token_says_a_person_must_sign_in_and_never_echoes_it() -> None:
    error = await refused(
        echoing(400, "invalid_grant", "refresh_token", "spent: "), user_grant(), FIRST
    )
    assert isinstance(error, SignInRequired)
    assert "a person must sign in again" in error.cause
    assert FIRST not in f"{error.cause} {error.description}"


async def test_a_refused_password_is_the_configurations_matter_and_never_echoed() -> None:
    error = await refused(
        echoing(400, "invalid_grant", "password", "wrong: "), user_grant(GrantType.PASSWORD)
    )
    assert not isinstance(error, SignInRequired)
    assert "check username and the password" in error.cause
    assert PASSWORD not in f"{error.cause} {error.description}"


async def test_a_refresh_token_is_only_kept_for_a_users_grant(make_grant) -> None:
    answer = json_answer(200, GOOD | {"refresh_token": "rt-odd"})
    assert (await ask(answer, make_grant())).refresh_token is None  # client credentials
    garbled = json_answer(200, GOOD | {"refresh_token": 42})
    assert (await ask(garbled, user_grant(), FIRST)).refresh_token is None


# --- what the store keeps ---


def test_the_refresh_token_is_kept_beside_the_token_and_sealed_like_it() -> None:
    grant = user_grant()
    token_key = derive_cache_key(b"k" * 32, grant, hash_tag=True)
    key = refresh_key(token_key)
    assert key == "refresh/" + token_key.removeprefix("token/")
    codec = TokenCodec("a store key of sixteen+ characters")
    sealed = codec.encode_refresh("rt-secret-value", key)
    assert b"rt-secret-value" not in sealed
    assert codec.read_refresh(sealed, key) == "rt-secret-value"
    assert codec.read_refresh(sealed, token_key) is None  # moved under another key: unreadable
    assert TokenCodec("another key, sixteen+ characters").read_refresh(sealed, key) is None


def test_a_refresh_token_given_anew_is_another_grant() -> None:
    again = user_grant(first="rt-after-signing-in-again")
    assert derive_cache_key(b"k" * 32, again) != derive_cache_key(b"k" * 32, user_grant())
    other_password = user_grant(GrantType.PASSWORD, password=Secret("new password"))
    assert derive_cache_key(b"k" * 32, other_password) != derive_cache_key(
        b"k" * 32, user_grant(GrantType.PASSWORD)
    )


# --- the broker ---


async def test_the_rotated_refresh_token_is_stored_and_only_it_is_used_from_then_on(
    clock: FakeClock,
) -> None:
    server, store, grant = RotatingServer(), MemoryStore(), user_grant()
    broker = TokenBroker(server, store, clock)
    assert (await broker.issue(grant)).token.access_token == "at-1"
    assert store.refresh_tokens[grant] == "rt-1"
    renewal_due(clock)
    await broker.issue(grant)
    await settle(broker)
    assert store.refresh_tokens[grant] == "rt-2"
    restarted = TokenBroker(server, store, clock)  # a restart, or another proxy on the store
    clock.advance(LIFETIME)
    await restarted.issue(grant)
    assert server.asked == [FIRST, "rt-1", "rt-2"]
    assert not server.revoked


async def test_a_server_that_does_not_rotate_keeps_the_given_token_in_use(
    clock: FakeClock,
) -> None:
    server, store, grant = RotatingServer(rotates=False), MemoryStore(), user_grant()
    broker = TokenBroker(server, store, clock)
    await broker.issue(grant)
    clock.advance(LIFETIME)
    await broker.issue(grant)
    assert server.asked == [FIRST, FIRST]
    assert store.refresh_tokens == {}


async def test_the_new_refresh_token_is_saved_before_its_access_token_is_used(
    clock: FakeClock,
) -> None:
    class SlowToSave(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.saving = asyncio.Event()
            self.go_on = asyncio.Event()

        async def save_refresh(self, grant: TokenGrant, refresh_token: str) -> None:
            self.saving.set()
            await self.go_on.wait()
            await super().save_refresh(grant, refresh_token)

    store, grant = SlowToSave(), user_grant()
    broker = TokenBroker(RotatingServer(), store, clock)
    issue = asyncio.ensure_future(broker.issue(grant))
    await asyncio.wait_for(store.saving.wait(), 5)
    await asyncio.sleep(0.01)
    assert not issue.done()
    assert store.tokens == {}  # nor is the access token stored yet
    store.go_on.set()
    assert (await asyncio.wait_for(issue, 5)).token.access_token == "at-1"
    assert store.refresh_tokens[grant] == "rt-1"


async def test_two_processes_renew_one_at_a_time_and_never_present_a_spent_token(
    tmp_path: Path, clock: FakeClock
) -> None:
    server, grant = RotatingServer(), user_grant()
    stores = [DiskTokenStore.open_sync(tmp_path / "cache") for _ in range(2)]
    brokers = [TokenBroker(server, store, clock, lock_poll=0.01) for store in stores]
    try:
        for _ in range(30):
            await asyncio.gather(*(broker.issue(grant) for broker in brokers for _ in range(3)))
            clock.advance(LIFETIME)  # expired: every caller waits for the renewal
    finally:
        for store in stores:
            store.close()
    assert not server.revoked
    assert server.issued == 30  # one renewal per lifetime for both processes
    assert server.asked == [FIRST, *(f"rt-{n}" for n in range(1, 30))]


async def test_a_refused_refresh_token_is_answered_once_and_not_asked_again(
    clock: FakeClock, addon_log: pytest.LogCaptureFixture
) -> None:
    server, store, grant = RotatingServer(first="rt-revoked-meanwhile"), MemoryStore(), user_grant()
    server.current = "rt-another"  # the server no longer takes the given one
    broker = TokenBroker(server, store, clock)
    for wait in (0, 60, 3600, 86400):
        clock.advance(wait)
        with pytest.raises(SignInRequired):
            await broker.issue(grant)
    assert len(server.asked) == 1
    status = broker.status(grant, store_ok=True)
    assert status.sign_in_required
    assert status.to_json()["sign_in_required"] is True
    errors = [r for r in addon_log.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert "no token request is made until then" in errors[0].getMessage()
    broker.refresh(grant)  # oauth.refresh: the operator asks for one more try
    await settle(broker)
    assert len(server.asked) == 2


async def test_the_password_grant_renews_with_its_refresh_token_then_the_password_again(
    clock: FakeClock,
) -> None:
    server = RotatingServer(first=None)
    store, grant = MemoryStore(), user_grant(GrantType.PASSWORD)
    broker = TokenBroker(server, store, clock)
    await broker.issue(grant)
    clock.advance(LIFETIME)
    await broker.issue(grant)
    assert server.asked == [None, "rt-1"]  # the password once, then its refresh token
    server.current = "rt-elsewhere"  # revoked at the server: the password is asked with again
    clock.advance(LIFETIME)
    assert (await broker.issue(grant)).token.access_token == "at-3"
    assert server.asked == [None, "rt-1", "rt-2", None]
    assert store.refresh_tokens[grant] == "rt-3"


class FailingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.error: Exception | None = None

    async def load_refresh(self, grant: TokenGrant) -> str | None:
        if self.error:
            raise self.error
        return await super().load_refresh(grant)

    async def save_refresh(self, grant: TokenGrant, refresh_token: str) -> None:
        if self.error:
            raise self.error
        await super().save_refresh(grant, refresh_token)

    async def try_lock(self, grant: TokenGrant, owner: str, lease: float) -> bool:
        if self.error:
            raise self.error
        return True


@pytest.fixture
def guarded(clock: FakeClock):
    raw = FailingStore()

    async def opener() -> FailingStore:
        return raw

    return GuardedStore(opener, "token store redis://r:6379/0", 0.05, 2.0, clock), raw


async def test_the_given_token_is_not_used_while_the_store_cannot_say_it_was_rotated(
    guarded, clock: FakeClock
) -> None:
    guard, raw = guarded
    raw.refresh_tokens[user_grant()] = "rt-7"
    raw.error = ConnectionError("Connection refused")
    server = RotatingServer()
    with pytest.raises(TokenError, match="does not answer"):
        await TokenBroker(server, guard, clock).issue(user_grant())
    assert server.asked == []


async def test_a_refresh_token_rotated_while_the_store_fails_is_written_there_once_it_answers(
    guarded, clock: FakeClock, addon_log: pytest.LogCaptureFixture
) -> None:
    guard, raw = guarded
    grant = user_grant()
    assert await guard.load_refresh(grant) is None
    raw.error = ConnectionError("Connection refused")
    await guard.save_refresh(grant, "rt-only-here")
    assert "kept in this process only" in addon_log.text
    assert await guard.load_refresh(grant) == "rt-only-here"  # this process's is the newest
    raw.error = None
    clock.advance(2.5)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if raw.refresh_tokens.get(grant):
            break
    assert raw.refresh_tokens[grant] == "rt-only-here"
    assert await guard.load_refresh(grant) == "rt-only-here"
    await guard.aclose()


async def test_a_users_token_request_ends_before_the_lock_could_pass_to_another(
    clock: FakeClock,
) -> None:
    server, grant = RotatingServer(), user_grant()
    server.gate = asyncio.Event()  # never answers
    broker = TokenBroker(server, MemoryStore(), clock, lock_lease=1.5)
    with pytest.raises(TokenError, match="longer than the store's lock lasts"):
        await asyncio.wait_for(broker.issue(grant), 5)
