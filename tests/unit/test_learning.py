"""Learning an unconfigured backend (RFC 9728): its protected resource metadata, then its
authorization server's, fetched over HTTPS within bounds, checked, and made a `[[backend]]`
table that loads as it is; bad metadata refused with the reason."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import httpx
import pytest
from mitmproxy import http
from mitmproxy.test import tflow
from mitmproxy.test import tutils

from mitm_oauth2.client import resource_metadata
from mitm_oauth2.client.resource_metadata import ResourceLearner
from mitm_oauth2.commands import OAuth2Commands
from mitm_oauth2.config.suggestion import backend_name
from mitm_oauth2.config.suggestion import suggested_table
from mitm_oauth2.learning import Learning
from mitm_oauth2.model.errors import LearningError
from mitm_oauth2.model.learned import LearnedBackend
from tests.support.config_helpers import load
from tests.unit.broker_fakes import run_hook

pytestmark = pytest.mark.anyio

API = "https://mcp.example.test"
PRM_URL = f"{API}/.well-known/oauth-protected-resource"
ISSUER = "https://login.example.test/tenant"
AS_URL = "https://login.example.test/.well-known/oauth-authorization-server/tenant"
PRM = {"resource": API, "authorization_servers": [ISSUER], "scopes_supported": ["mcp:tools"]}
AS_METADATA = {"issuer": ISSUER, "token_endpoint": "https://login.example.test/tenant/token"}


def serving(documents: dict[str, httpx.Response]) -> tuple[ResourceLearner, list[str]]:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        assert "authorization" not in request.headers  # never a credential
        assert "cookie" not in request.headers
        return documents.get(str(request.url), httpx.Response(404))

    return ResourceLearner(transport=httpx.MockTransport(handler)), asked


def good() -> dict[str, httpx.Response]:
    return {PRM_URL: httpx.Response(200, json=PRM), AS_URL: httpx.Response(200, json=AS_METADATA)}


def prm(**changes: object) -> dict[str, httpx.Response]:
    """The resource's metadata with `changes`, and good issuer metadata."""
    return {**good(), PRM_URL: httpx.Response(200, json={**PRM, **changes})}


async def test_what_the_backend_and_its_authorization_server_say() -> None:
    learner, asked = serving(good())
    learned = await learner.learn(f"{API}/mcp/tools?x=1", PRM_URL)
    assert learned == LearnedBackend(API, ISSUER, ("mcp:tools",), PRM_URL)
    assert asked == [PRM_URL, AS_URL]


async def test_the_openid_document_when_there_is_no_rfc_8414_one() -> None:
    openid = f"{ISSUER}/.well-known/openid-configuration"
    documents = {
        PRM_URL: httpx.Response(200, json=PRM),
        openid: httpx.Response(200, json=AS_METADATA),
    }
    learner, _ = serving(documents)
    assert (await learner.learn(API + "/", PRM_URL)).issuer == ISSUER


def redirect(to: str) -> httpx.Response:
    return httpx.Response(302, headers={"Location": to})


HUGE = httpx.Response(200, content=b" " * (64 * 1024 + 1))
OTHER_ISSUER = {**good(), AS_URL: httpx.Response(200, json={**AS_METADATA, "issuer": "https://x"})}
BAD = {
    "other-resource": (PRM_URL, prm(resource="https://evil.test"), "resource 'https://evil.test'"),
    "other-path": (PRM_URL, prm(resource=f"{API}/other"), "not for https://mcp.example.test/x"),
    "not-json": (PRM_URL, {PRM_URL: httpx.Response(200, text="<html>")}, "not JSON"),
    "not-an-object": (PRM_URL, {PRM_URL: httpx.Response(200, json=[PRM])}, "not a JSON object"),
    "huge": (PRM_URL, {PRM_URL: HUGE}, "more than 65536 bytes"),
    "redirect-elsewhere": (PRM_URL, {PRM_URL: redirect("https://other.test/p")}, "other.test"),
    "error": (PRM_URL, {PRM_URL: httpx.Response(500)}, "HTTP 500"),
    "plain-http": ("http://mcp.example.test/prm", good(), "not an https URL on mcp.example.test"),
    "another-host": ("https://other.test/prm", good(), "not an https URL on mcp.example.test"),
    "no-servers": (PRM_URL, prm(authorization_servers=[]), "names no authorization_servers"),
    "http-issuer": (PRM_URL, prm(authorization_servers=["http://x.test"]), "is not https"),
    "issuer-mismatch": (PRM_URL, OTHER_ISSUER, "is not the metadata of issuer"),
}


@pytest.mark.parametrize(("metadata_url", "documents", "why"), BAD.values(), ids=BAD.keys())
async def test_bad_metadata_is_refused_saying_why(
    metadata_url: str, documents: dict[str, httpx.Response], why: str
) -> None:
    learner, _ = serving(documents)
    with pytest.raises(LearningError) as refused:
        await learner.learn(f"{API}/x", metadata_url)
    assert why in str(refused.value)


async def test_a_redirect_within_the_server_is_followed() -> None:
    moved = f"{API}/meta/prm.json"
    documents = {
        **good(),
        PRM_URL: redirect("/meta/prm.json"),
        moved: httpx.Response(200, json=PRM),
    }
    learner, asked = serving(documents)
    assert (await learner.learn(f"{API}/x", PRM_URL)).resource == API
    assert asked[:2] == [PRM_URL, moved]


async def test_a_slow_server_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource_metadata, "TIMEOUT", 0.05)

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=PRM)

    learner = ResourceLearner(transport=httpx.MockTransport(handler))
    with pytest.raises(LearningError) as refused:
        await learner.learn(f"{API}/x", PRM_URL)
    assert "no answer within 0.05 s" in str(refused.value)


def test_the_suggested_table_loads_as_it_is(tmp_path: Path) -> None:
    learned = LearnedBackend(API, ISSUER, ("mcp:tools", "mcp:read"), PRM_URL)
    text = suggested_table("mcp.example.test:8443", learned)
    assert tomllib.loads(text)["backend"][0] == {
        "name": "mcp-example-test-8443",
        "hosts": ["mcp.example.test:8443"],
        "issuer": ISSUER,
        "resource": API,
        "scope": "mcp:tools mcp:read",
        "client_id_env": "MCP_EXAMPLE_TEST_8443_CLIENT_ID",
        "client_secret_env": "MCP_EXAMPLE_TEST_8443_CLIENT_SECRET",
    }
    environ = {
        "MCP_EXAMPLE_TEST_8443_CLIENT_ID": "proxy",
        "MCP_EXAMPLE_TEST_8443_CLIENT_SECRET": "s",
    }
    (backend,) = load(tmp_path, text, environ=environ).backends
    assert (backend.name, backend.grant.credentials.client_id) == ("mcp-example-test-8443", "proxy")
    assert backend.grant.credentials.resources == (API,)


def test_a_private_ca_the_metadata_was_verified_with_is_trusted_for_tokens_too() -> None:
    learned = LearnedBackend(API, ISSUER, (), PRM_URL)
    suggested = tomllib.loads(suggested_table("mcp.example.test", learned, "/etc/ca/private.pem"))
    assert suggested["backend"][0]["token_ca_bundle"] == "/etc/ca/private.pem"
    assert "scope" not in suggested["backend"][0]  # none supported: none asked for


def test_backend_names_from_hosts() -> None:
    assert backend_name("mcp.example.test") == "mcp-example-test"
    assert backend_name("[::1]:8443") == "1-8443"
    assert backend_name("...") == "learned"


class TaughtLearner:
    """Stands in for ResourceLearner: what it learns, or the refusal it raises."""

    ca_file = None

    def __init__(self, refusal: str | None = None) -> None:
        self.asked: list[tuple[str, str]] = []
        self.refusal = refusal

    async def learn(self, request_url: str, metadata_url: str) -> LearnedBackend:
        self.asked.append((request_url, metadata_url))
        if self.refusal is not None:
            raise LearningError(self.refusal)
        return LearnedBackend(API, ISSUER, ("mcp:tools",), metadata_url)

    async def aclose(self) -> None:
        pass


def unconfigured_401(challenge: str) -> http.HTTPFlow:
    request = tutils.treq(host="mcp.example.test", port=443, scheme=b"https", path=b"/mcp")
    flow = tflow.tflow(req=request)
    flow.response = http.Response.make(401, b"", {"WWW-Authenticate": challenge})
    return flow


CHALLENGE = f'Bearer realm="mcp", resource_metadata="{PRM_URL}"'


async def test_a_401_naming_its_metadata_is_learned_once_and_suggested(
    wired, addon_log: pytest.LogCaptureFixture
) -> None:
    addon, broker, _ = wired
    learner = TaughtLearner()
    addon.learning = Learning(lambda: learner)
    flows = [unconfigured_401(CHALLENGE) for _ in range(2)]
    for flow in flows:
        await run_hook(addon.response(flow))
    assert learner.asked == [("https://mcp.example.test/mcp", PRM_URL)]  # once per host
    assert broker.calls == []  # nothing asked of the learned server
    for flow in flows:
        assert flow.response is not None
        assert flow.response.status_code == 401  # the caller's answer, as it was
        assert flow.comment == (
            f"learned · oauth.suggest has a [[backend]] for it, tokens of {ISSUER} · "
            "mcp.example.test"
        )
        assert flow.metadata["oauth2"] == {
            "learned": {"resource": API, "issuer": ISSUER, "scopes": ["mcp:tools"]}
        }
    (line,) = [r.getMessage() for r in addon_log.records if "RFC 9728" in r.getMessage()]
    assert line.startswith(f"oauth2: mcp.example.test wants tokens of {ISSUER}")
    table = OAuth2Commands(addon).suggest()
    assert tomllib.loads(table)["backend"][0]["hosts"] == ["mcp.example.test"]


class Broken(TaughtLearner):
    async def learn(self, request_url: str, metadata_url: str) -> LearnedBackend:
        raise RuntimeError("unexpected")


@pytest.mark.parametrize(
    ("learner", "why"),
    [
        (lambda: TaughtLearner(refusal="it is for resource 'x'"), "it is for resource 'x'"),
        (Broken, "internal error (RuntimeError)"),  # whatever it raises: told, not raised
    ],
    ids=["refused", "broken"],
)
async def test_unusable_metadata_is_told_on_the_flow_and_suggest_still_works(
    wired, learner, why: str
) -> None:
    addon, _, _ = wired
    addon.learning = Learning(learner)
    flow = unconfigured_401(CHALLENGE)
    await run_hook(addon.response(flow))
    assert flow.comment == f"not learned · {why} · mcp.example.test"
    assert OAuth2Commands(addon).suggest().startswith("# no backend learned yet")


async def test_other_answers_teach_nothing(wired) -> None:
    addon, _, _ = wired
    learner = TaughtLearner()
    addon.learning = Learning(lambda: learner)
    for challenge in ('Bearer realm="mcp"', 'Basic realm="x"'):
        flow = unconfigured_401(challenge)
        await run_hook(addon.response(flow))
        assert "oauth2" not in flow.metadata
    assert learner.asked == []


async def test_an_internet_backend_cannot_make_the_proxy_ask_its_own_network() -> None:
    public = "https://8.8.8.8"
    documents = {
        f"{public}/prm": httpx.Response(
            200, json={"resource": public, "authorization_servers": ["https://127.0.0.1:9200"]}
        )
    }
    learner, asked = serving(documents)
    with pytest.raises(LearningError) as refused:
        await learner.learn(f"{public}/x", f"{public}/prm")
    assert "is on a private address, and the backend 8.8.8.8 is not" in str(refused.value)
    assert asked == [f"{public}/prm"]  # the private address was never asked


async def test_an_answer_waiting_for_a_lesson_goes_on_when_the_addon_closes(wired) -> None:
    addon, _, _ = wired
    started = asyncio.Event()

    class Hanging(TaughtLearner):
        async def learn(self, request_url: str, metadata_url: str) -> LearnedBackend:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("never")

    addon.learning = Learning(Hanging)
    flow = unconfigured_401(CHALLENGE)
    waiting = asyncio.ensure_future(run_hook(addon.response(flow)))
    await started.wait()
    addon.learning.close()
    await waiting  # no CancelledError into mitmproxy's hook
    assert "oauth2" not in flow.metadata
