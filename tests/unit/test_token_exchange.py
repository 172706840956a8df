"""Token exchange (RFC 8693) below the glue: the request on the wire (the caller's token as the
subject, the actor's read from its file for each exchange), what comes back (`N_A` tokens,
refusals that are the caller's matter), and the broker's rules for a caller's token (no longer
than the caller's JWT, not renewed ahead when it ends with it, forgotten on eviction)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from mitm_oauth2.model.credentials import ACCESS_TOKEN_TYPE
from mitm_oauth2.model.credentials import Exchange
from mitm_oauth2.model.credentials import GrantType
from mitm_oauth2.model.credentials import SubjectToken
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.errors import CallerTokenRefused
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import START
from tests.unit.client_helpers import GOOD
from tests.unit.client_helpers import Recorder
from tests.unit.client_helpers import ask
from tests.unit.client_helpers import echoing
from tests.unit.client_helpers import form
from tests.unit.client_helpers import json_answer
from tests.unit.client_helpers import refused

pytestmark = pytest.mark.anyio

CALLER = "caller-token-abc"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"


@pytest.fixture
def exchanging(make_grant):
    def make(caller: str = CALLER, expires: float | None = None, **settings: object) -> TokenGrant:
        template = make_grant(
            grant=GrantType.TOKEN_EXCHANGE,
            exchange=Exchange(**settings),  # type: ignore[arg-type]
            audience="orders-api",
        )
        return template.for_subject(SubjectToken(caller, expires))

    return make


async def test_the_callers_token_is_the_subject_with_the_clients_authentication(
    exchanging,
) -> None:
    recorder = Recorder(json_answer(200, GOOD))
    await ask(recorder, exchanging(requested_token_type="urn:example:api-token"))
    (request,) = recorder.requests
    posted = form(request)
    assert posted["grant_type"] == [GRANT_TYPE]
    assert posted["subject_token"] == [CALLER]
    assert posted["subject_token_type"] == [ACCESS_TOKEN_TYPE]
    assert posted["requested_token_type"] == ["urn:example:api-token"]
    assert posted["audience"] == ["orders-api"]
    assert "actor_token" not in posted
    assert request.headers["Authorization"].startswith("Basic ")


async def test_the_actor_token_is_read_from_its_file_for_each_exchange(
    exchanging, tmp_path: Path
) -> None:
    actor = tmp_path / "actor.jwt"
    actor.write_text("actor-one\n", encoding="utf-8")
    grant = exchanging(actor_token_file=str(actor), actor_token_type=ACCESS_TOKEN_TYPE)
    recorder = Recorder(json_answer(200, GOOD))
    await ask(recorder, grant)
    actor.write_text("actor-two\n", encoding="utf-8")  # the platform rotated it
    await ask(recorder, grant)
    sent = [form(request)["actor_token"] for request in recorder.requests]
    assert sent == [["actor-one"], ["actor-two"]]
    assert form(recorder.requests[0])["actor_token_type"] == [ACCESS_TOKEN_TYPE]


async def test_an_unreadable_actor_file_is_named_and_nothing_is_sent(
    exchanging, tmp_path: Path
) -> None:
    grant = exchanging(actor_token_file=str(tmp_path / "gone"), actor_token_type="x:y")
    recorder = Recorder(json_answer(200, GOOD))
    error = await refused(recorder, grant)
    assert "actor token file" in error.cause
    assert "gone" in error.cause
    assert recorder.requests == []


async def test_a_token_that_is_no_access_token_goes_as_bearer(exchanging) -> None:
    answer = {"access_token": "a.jwt.here", "token_type": "N_A", "expires_in": 60}
    answer["issued_token_type"] = "urn:ietf:params:oauth:token-type:jwt"
    response = await ask(Recorder(json_answer(200, answer)), exchanging())
    assert (response.access_token, response.token_type) == ("a.jwt.here", "Bearer")


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("invalid_grant", "the server refused the caller's token"),
        ("invalid_target", "for this audience or resource"),
    ],
)
async def test_a_refused_callers_token_is_the_callers_matter_and_never_echoed(
    exchanging, code: str, says: str
) -> None:
    error = await refused(echoing(400, code, "subject_token", "you sent "), exchanging())
    assert isinstance(error, CallerTokenRefused)
    assert error.oauth_error == code
    assert says in error.cause
    assert CALLER not in f"{error.cause} {error.description}"


async def test_other_refusals_stay_the_proxys_own(exchanging) -> None:
    error = await refused(Recorder(json_answer(401, {"error": "invalid_client"})), exchanging())
    assert not isinstance(error, CallerTokenRefused)
    assert "check client_id" in error.cause


# --- the broker ---


async def test_an_exchanged_token_lives_no_longer_than_the_callers_jwt(
    exchanging, endpoint, store, clock
) -> None:
    broker = TokenBroker(endpoint, store, clock)
    grant = exchanging(expires=START + 120)  # the server's token would live an hour
    issued = await broker.issue(grant)
    assert issued.left <= 120
    assert store.ttls[grant] == 120
    clock.advance(100)  # past where an hour's token would be renewed ahead: not this one
    assert (await broker.issue(grant)).source == "cache"
    await asyncio.sleep(0)
    assert endpoint.calls == 1
    clock.advance(30)  # the caller's token has expired: nothing is exchanged for it
    with pytest.raises(CallerTokenRefused, match="expired"):
        await broker.issue(grant)
    assert endpoint.calls == 1


async def test_a_token_that_ends_before_the_callers_is_renewed_ahead(
    exchanging, endpoint, store, clock
) -> None:
    endpoint.expires_in = 60
    broker = TokenBroker(endpoint, store, clock)
    grant = exchanging(expires=START + 3600)
    await broker.issue(grant)
    clock.advance(45)  # inside the renewal margin of a 60-second token
    assert (await broker.issue(grant)).renewing
    await asyncio.sleep(0)
    assert endpoint.calls == 2


async def test_forget_drops_a_callers_token_but_the_store_keeps_it(
    exchanging, endpoint, store, clock
) -> None:
    broker = TokenBroker(endpoint, store, clock)
    grant = exchanging()
    await broker.issue(grant)
    broker.forget(grant)
    assert broker.issue_held(grant) is None
    assert grant in store.tokens
    assert (await broker.issue(grant)).token.access_token == "tok-1"  # read back, not asked
    assert endpoint.calls == 1


async def test_a_caller_forgotten_while_its_exchange_runs_is_dropped_after(
    exchanging, endpoint, store, clock
) -> None:
    broker = TokenBroker(endpoint, store, clock)
    grant = exchanging()
    endpoint.gate = asyncio.Event()
    waiting = asyncio.ensure_future(broker.issue(grant))
    await endpoint.started.wait()
    broker.forget(grant)
    endpoint.gate.set()
    assert (await waiting).token.access_token == "tok-1"  # the waiting caller still gets it
    await asyncio.sleep(0)
    assert broker.issue_held(grant) is None


async def test_a_refusal_is_shared_by_the_callers_requests_without_asking_again(
    exchanging, endpoint, store, clock
) -> None:
    endpoint.failure = CallerTokenRefused("refused", oauth_error="invalid_grant", status=400)
    broker = TokenBroker(endpoint, store, clock)
    grant = exchanging()
    for _ in range(3):
        with pytest.raises(CallerTokenRefused):
            await broker.issue(grant)
    assert endpoint.calls == 1
    other = exchanging(caller="another-caller")
    endpoint.failure = None
    assert (await broker.issue(other)).source == "fetched"


async def test_no_exchange_without_a_valid_answer(exchanging) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"token_type": "Bearer"})

    error = await refused(broken, exchanging())
    assert isinstance(error, TokenError)
    assert not isinstance(error, CallerTokenRefused)
