"""oauth.status, oauth.refresh and oauth.purge, on a real broker with a fake endpoint."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest
from mitmproxy import exceptions

from mitm_oauth2.commands import OAuth2Commands
from mitm_oauth2.config.backend import BackendConfig
from mitm_oauth2.config.hosts import parse_host_pattern
from mitm_oauth2.model.credentials import TokenGrant
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.tokens.broker import TokenBroker
from mitm_oauth2.tokens.status import BackendStatus
from tests.unit.broker_fakes import FakeEndpoint
from tests.unit.broker_fakes import settle

pytestmark = pytest.mark.anyio


@dataclass
class Running:
    broker: TokenBroker | None
    backends: tuple[BackendConfig, ...]

    def statuses(self) -> list[tuple[str, BackendStatus]]:
        broker = self.broker
        if broker is None:
            return []
        return [(b.name, broker.status(b.grant, store_ok=True)) for b in self.backends]

    def grants(self, backend: BackendConfig) -> list[TokenGrant]:
        return [backend.grant]


def reported(token: str, age: float, left: float, **fields: object) -> dict[str, object]:
    """A backend's entry in oauth.status's report, its token where `token` says, `age` s old
    with `left` s to use; `fields` say what else differs from one that is not renewing, has
    fetched nothing, no replays, no failures and no scope refusals, on the test's memory
    store."""
    entry: dict[str, object] = {
        "token": token,
        "renewing": False,
        "token_age_s": age,
        "token_left_s": left,
        "fetches": 0,
        "cache_hits": 0,
        "replays": 0,
        "failures": {},
        "last_error": None,
        "scope_refusals": 0,
        "last_scope_refusal": None,
        "store": "test memory",
        "store_ok": True,
        "claims": "opaque",  # the fake endpoint's tokens are no JWTs
    }
    unknown = fields.keys() - entry.keys()
    assert not unknown, f"not in a status entry: {unknown}"
    return entry | fields


@pytest.fixture
def running(broker, make_grant) -> Running:
    backends = tuple(
        BackendConfig(name, (parse_host_pattern(f"{name}.test"),), make_grant(backend=name))
        for name in ("billing", "orders")
    )
    return Running(broker, backends)


async def test_status_reports_tokens_and_counters(running, endpoint) -> None:
    commands = OAuth2Commands(running)
    billing = running.backends[0].grant
    await running.broker.token(billing)
    await running.broker.token(billing)
    endpoint.failure = TokenError("token endpoint answered HTTP 503", status=503)
    with pytest.raises(TokenError):
        await running.broker.token(running.backends[1].grant)
    report = json.loads(commands.status())
    # the 10 s before expiry are not used
    assert report["billing"] == reported("memory", 0.0, 3590.0, fetches=1, cache_hits=1)
    assert report["orders"]["token"] == "none"
    assert report["orders"]["failures"] == {"http_503": 1}
    assert report["orders"]["last_error"] == "token endpoint answered HTTP 503"
    assert "tok-" not in commands.status()


async def test_status_tells_a_token_in_the_store_that_this_process_has_not_taken(
    running, endpoint, store, clock
) -> None:
    """Another process fetched it: this one knows from reading the store, with no request."""
    commands = OAuth2Commands(running)
    billing, orders = (backend.grant for backend in running.backends)
    running.broker.look_after((billing, orders))  # as the addon does when it starts
    await asyncio.sleep(0)  # the first look: nothing stored yet
    assert json.loads(commands.status())["billing"]["token"] == "none"

    other = TokenBroker(FakeEndpoint(), store, clock)  # another process on the same store
    await other.token(billing)
    clock.advance(600)
    await running.broker.look(billing)  # what its next look reads
    report = json.loads(commands.status())
    # the 10 s before expiry are not used
    assert report["billing"] == reported("store", 600.0, 2990.0, fetches=0, cache_hits=0)
    assert report["orders"]["token"] == "none"
    assert endpoint.calls == 0

    assert (await running.broker.token(billing)).access_token == "tok-1"  # taken, not fetched
    assert json.loads(commands.status())["billing"]["token"] == "memory"
    clock.advance(3000)  # past its end: neither here nor in the store is it valid
    assert json.loads(commands.status())["billing"]["token"] == "none"
    running.broker.close()


async def test_refresh_renews_now_even_after_failures(running, endpoint) -> None:
    commands = OAuth2Commands(running)
    orders = running.backends[1].grant
    endpoint.failure = TokenError("cannot connect to token endpoint")
    with pytest.raises(TokenError):
        await running.broker.token(orders)
    endpoint.failure = None
    commands.refresh("orders")
    await settle(running.broker)
    assert (await running.broker.token(orders)).access_token == "tok-2"
    commands.refresh()  # every backend
    await settle(running.broker)
    assert endpoint.calls == 4


async def test_purge_forgets_in_memory_and_in_the_store(running, endpoint, store) -> None:
    commands = OAuth2Commands(running)
    billing = running.backends[0].grant
    await running.broker.token(billing)
    commands.purge("billing")
    await asyncio.sleep(0)  # one loop turn: the purge task runs
    assert store.tokens == {}
    assert (await running.broker.token(billing)).access_token == "tok-2"


def test_unknown_backend_and_no_configuration_are_command_errors(running) -> None:
    with pytest.raises(exceptions.CommandError, match="no backend named nope"):
        OAuth2Commands(running).refresh("billing", "nope")
    with pytest.raises(exceptions.CommandError, match="oauth2_config"):
        OAuth2Commands(Running(None, ())).purge()


def test_the_addon_registers_the_commands(tmp_path) -> None:
    from mitmproxy.test import taddons

    from mitm_oauth2.addon import OAuth2Backend

    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:
        assert json.loads(tctx.master.commands.execute("oauth.status")) == {}
        with pytest.raises(exceptions.CommandError, match="oauth2_config"):
            tctx.master.commands.execute("oauth.refresh")
