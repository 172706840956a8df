"""Token exchange through the addon: the caller's token chooses the grant and never goes on; a
request without one, with one unfit to send, or one the server refuses is answered 401/403 and
not forwarded; a 401 from the backend evicts that caller's token only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mitmproxy import ctx
from mitmproxy import http
from mitmproxy.test import taddons
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2 import addon as addon_module
from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.model.errors import CallerTokenRefused
from mitm_oauth2.model.errors import TokenError
from mitm_oauth2.model.token import fingerprint
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import FakeClock
from tests.unit.broker_fakes import FakeEndpoint
from tests.unit.broker_fakes import MemoryStore
from tests.unit.broker_fakes import run_hook

pytestmark = pytest.mark.anyio

CONFIG = """
[[backend]]
name = "orders"
hosts = ["api.test"]
token_url = "https://idp.test/oauth/token"
client_id = "proxy"
client_secret = "s3cr3t"
grant = "token_exchange"
audience = "orders-api"
{extra}
"""


@pytest.fixture
def endpoint() -> FakeEndpoint:
    return FakeEndpoint()


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: FakeEndpoint):
    """configure(extra) -> addon: running with a real broker on a fake endpoint and store."""
    broker = TokenBroker(endpoint, MemoryStore(), FakeClock())
    monkeypatch.setattr(addon_module, "open_broker", lambda store, lock_lease: broker)
    addon = OAuth2Backend()
    with taddons.context(addon) as tctx:

        def configure(extra: str = "") -> OAuth2Backend:
            path = tmp_path / "backends.toml"
            path.write_text(CONFIG.format(extra=extra), encoding="utf-8")
            tctx.configure(addon, oauth2_config=str(path), oauth2_cache_dir=str(tmp_path / "c"))
            return addon

        yield configure


def flow(*headers: tuple[str, str]) -> http.HTTPFlow:
    request = tutils.treq(host="api.test", port=443, scheme=b"https", path=b"/orders")
    for name, value in headers:
        request.headers.add(name, value)
    return tflow.tflow(req=request)


async def sent(addon: OAuth2Backend, f: http.HTTPFlow) -> http.HTTPFlow:
    await run_hook(addon.requestheaders(f))
    return f


def problem(f: http.HTTPFlow) -> dict[str, object]:
    assert f.response is not None
    assert f.response.headers["Content-Type"] == "application/problem+json"
    document: dict[str, object] = json.loads(f.response.content or b"")
    return document


async def test_each_caller_gets_a_token_of_its_own_in_place_of_its_own(proxy, endpoint) -> None:
    addon = proxy()
    alice = [await sent(addon, flow(("Authorization", "Bearer alice"))) for _ in range(3)]
    bob = await sent(addon, flow(("Authorization", "Bearer bob")))
    assert [f.request.headers["Authorization"] for f in alice] == ["Bearer tok-1"] * 3
    assert bob.request.headers["Authorization"] == "Bearer tok-2"
    assert endpoint.calls == 2
    assert all(f.response is None for f in [*alice, bob])
    meta = bob.metadata["oauth2"]
    assert meta["caller"] != alice[0].metadata["oauth2"]["caller"]
    assert "bob" not in json.dumps(bob.metadata)
    assert "bob" not in bob.comment
    ((name, status),) = addon.statuses()
    assert (name, status.to_json()["callers"], status.to_json()["fetches"]) == ("orders", 2, 2)


@pytest.mark.parametrize("command", ["oauth.purge", "oauth.refresh"])
async def test_purge_and_refresh_forget_each_callers_token(proxy, endpoint, command) -> None:
    addon = proxy()
    for caller in ("alice", "bob"):
        await sent(addon, flow(("Authorization", f"Bearer {caller}")))
    getattr(addon.commands, command.removeprefix("oauth."))("orders")
    await asyncio.sleep(0)  # one loop turn: the purges run
    again = [await sent(addon, flow(("Authorization", f"Bearer {c}"))) for c in ("alice", "bob")]
    assert [f.request.headers["Authorization"] for f in again] == ["Bearer tok-3", "Bearer tok-4"]
    assert endpoint.calls == 4


async def test_a_caller_token_in_another_header_comes_off(proxy) -> None:
    addon = proxy('subject_token_header = "X-Subject-Token"')
    f = await sent(addon, flow(("X-Subject-Token", "alice"), ("Authorization", "Basic x")))
    assert f.request.headers.get_all("Authorization") == ["Bearer tok-1"]
    assert "X-Subject-Token" not in f.request.headers


@pytest.mark.parametrize(
    "headers",
    [(), (("Authorization", "Basic dXNlcjpwdw=="),), (("Authorization", "Bearer "),)],
    ids=["none", "basic", "empty"],
)
async def test_no_bearer_token_is_challenged_and_nothing_forwarded(
    proxy, endpoint, headers
) -> None:
    f = await sent(proxy(), flow(*headers))
    assert f.response is not None
    assert f.response.status_code == 401
    assert f.response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in str(problem(f)["detail"])
    assert endpoint.calls == 0


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ((("Authorization", "Bearer " + "x" * (16 * 1024 + 1)),), "longer than 16 KiB"),
        ((("Authorization", "Bearer a"), ("Authorization", "Bearer b")), "2 Authorization"),
        ((("Authorization", "Bearer t\u00e9st"),), "printable ASCII"),
    ],
    ids=["too-long", "two", "not-ascii"],
)
async def test_a_caller_token_unfit_to_send_is_refused(proxy, endpoint, headers, says) -> None:
    f = await sent(proxy(), flow(*headers))
    assert f.response is not None
    assert f.response.status_code == 401
    assert 'error="invalid_token"' in f.response.headers["WWW-Authenticate"]
    assert says in str(problem(f)["detail"])
    assert endpoint.calls == 0


async def test_a_known_callers_token_sent_twice_is_refused(proxy, endpoint) -> None:
    addon = proxy()
    await sent(addon, flow(("Authorization", "Bearer alice")))
    f = await sent(
        addon, flow(("Authorization", "Bearer alice"), ("Authorization", "Bearer alice"))
    )
    assert f.response is not None
    assert f.response.status_code == 401
    assert "2 Authorization" in str(problem(f)["detail"])
    assert endpoint.calls == 1


@pytest.mark.parametrize(("code", "status"), [("invalid_grant", 401), ("invalid_target", 403)])
async def test_a_token_the_server_refuses_is_the_callers_answer(
    proxy, endpoint, addon_log, code, status
) -> None:
    endpoint.failure = CallerTokenRefused(f"refused ({code})", oauth_error=code, status=400)
    addon = proxy()
    flows = [await sent(addon, flow(("Authorization", f"Bearer caller-{n}"))) for n in range(3)]
    for f in flows:
        assert f.response is not None
        assert f.response.status_code == status
        assert problem(f)["oauth_error"] == code
    told = [r for r in addon_log.records if "a caller's token was refused" in r.getMessage()]
    assert len(told) == 1  # once per backend and cause, however many callers
    assert "caller-" not in addon_log.text


async def test_the_authorization_server_down_is_the_usual_502(proxy, endpoint) -> None:
    endpoint.failure = TokenError("cannot connect to token endpoint (connection refused)")
    f = await sent(proxy(), flow(("Authorization", "Bearer alice")))
    assert f.response is not None
    assert f.response.status_code == 502
    assert "WWW-Authenticate" not in f.response.headers  # not the caller's fault
    assert "cannot connect" in str(problem(f)["detail"])
    # Not forwarded: the flow keeps no copy of the caller's token (unless told to).
    assert f.request.headers["Authorization"] == f"Bearer [redacted {fingerprint('alice')}]"
    ctx.options.update(oauth2_redact=False)
    kept = await sent(proxy(), flow(("Authorization", "Bearer alice")))
    assert kept.request.headers["Authorization"] == "Bearer alice"


async def test_a_401_from_the_backend_evicts_that_callers_token_only(proxy, endpoint) -> None:
    addon = proxy()
    alice = await sent(addon, flow(("Authorization", "Bearer alice")))
    await sent(addon, flow(("Authorization", "Bearer bob")))
    alice.response = tutils.tresp(status_code=401, headers=http.Headers(), content=b"")
    await run_hook(addon.response(alice))
    assert alice.metadata["oauth2"]["no_replay"].startswith("the caller's token is not kept")
    again = await sent(addon, flow(("Authorization", "Bearer alice")))
    bob = await sent(addon, flow(("Authorization", "Bearer bob")))
    assert again.request.headers["Authorization"] == "Bearer tok-3"
    assert bob.request.headers["Authorization"] == "Bearer tok-2"
