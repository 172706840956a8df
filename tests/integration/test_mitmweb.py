"""mitmweb end to end: the real mitmweb with the addon, requests through its proxy, and the token
story read back from mitmweb's own HTTP API, the way its web UI gets it.

``/flows`` (the flow list the UI shows) has each flow's comment and marker but not
``flow.metadata``; ``/flows/dump`` (the UI's "Save" download) has the whole flow, metadata
included. Both need mitmweb's API token where the version has one (see mitmweb.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.devservers import DevServersProcess
from tests.support.devservers import toml_backend
from tests.support.fixtures import report_output
from tests.support.mitmweb import NEEDS_TOKEN
from tests.support.mitmweb import Mitmweb
from tests.support.procs import REPO
from tests.support.procs import subprocess_env
from tests.support.procs import until

StartMitmweb = Callable[[str], Mitmweb]
REFUSED = "\N{BLACK CIRCLE}"  # ●, how mitmweb's API and UI show the ":default:" marker
FINGERPRINT = re.compile(r"^[0-9a-f]{12}$")


@pytest.fixture
def start_mitmweb(
    request: pytest.FixtureRequest, tmp_path: Path, mitm_confdir: Path
) -> Iterator[StartMitmweb]:
    """start(config_toml_text) -> a running mitmweb with the addon; stopped at teardown."""
    started: list[Mitmweb] = []

    def start(config_toml_text: str) -> Mitmweb:
        web = Mitmweb(
            config_toml_text, config_path=tmp_path / "backends.toml", confdir=mitm_confdir
        )
        started.append(web)
        report_output(request, web)
        return web.start()

    yield start
    for web in started:
        web.stop()


def test_mitmweb_shows_the_token_story(
    devservers: DevServersProcess, start_mitmweb: StartMitmweb
) -> None:
    port = devservers.backend_host.rsplit(":", 1)[1]
    config = devservers.backend_toml("orders") + devservers.backend_toml(
        # Same server under another name, its own grant (other scope): it needs its own token.
        "inventory",
        hosts=[f"localhost:{port}"],
        scope="inventory.read",
    )
    web = start_mitmweb(config)

    with web.proxy_client() as client:
        good = client.get(f"{devservers.backend_url}/orders/7")
        assert good.status_code == 200, good.text
        devservers.configure(down=True)  # the token endpoint now closes every connection
        refused = client.get(f"http://localhost:{port}/stock")
    assert refused.status_code == 502, refused.text
    (seen,) = devservers.backend_requests()  # the refused request never reached the backend
    (authorization,) = seen["authorization"]
    assert authorization.startswith("Bearer ")
    token = authorization.removeprefix("Bearer ")

    # The API refuses a caller without the token on versions that have one.
    with web.api_client(authenticated=False) as anonymous:
        status = anonymous.get("/flows").status_code
    assert status == (403 if NEEDS_TOKEN else 200)

    raw, flows = web.flows_json()
    by_path = {f["request"]["path"]: f for f in flows}
    assert sorted(by_path) == ["/orders/7", "/stock"], raw
    ok, no = by_path["/orders/7"], by_path["/stock"]

    assert ok["response"]["status_code"] == 200
    story = re.fullmatch(r"fetched · (\d+) s left · orders", ok["comment"])
    assert story, ok["comment"]  # "3600 s left" unless the machine is very slow
    assert ok["marked"] == ""
    assert no["response"]["status_code"] == 502
    assert no["marked"] == REFUSED
    assert re.fullmatch(r"refused · .+ · inventory", no["comment"]), no["comment"]

    # The request went out with the token; mitmweb shows it redacted (oauth2_redact).
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:12]
    assert [v for k, v in ok["request"]["headers"] if k.lower() == "authorization"] == [
        f"Bearer [redacted {fingerprint}]"
    ]
    assert all(k.lower() != "authorization" for k, _ in no["request"]["headers"])
    assert token not in raw

    # The metadata, from the whole flows mitmweb saves.
    dumped = {f.request.path: f for f in web.flows_dump()}
    meta = dumped["/orders/7"].metadata["oauth2"]
    assert meta["backend"] == "orders"
    assert meta["source"] == "fetched"
    assert FINGERPRINT.match(meta["fingerprint"]), meta
    assert meta["fingerprint"] == hashlib.sha256(token.encode()).hexdigest()[:12]
    assert 0 <= meta["token_age_s"] < 60
    assert 3500 < meta["token_left_s"] <= 3600
    assert abs(int(story.group(1)) - meta["token_left_s"]) <= 0.5  # the comment says the same
    assert token not in json.dumps(meta)
    assert (
        dumped["/orders/7"].request.headers["Authorization"] == f"Bearer [redacted {fingerprint}]"
    )
    refused_meta = dumped["/stock"].metadata["oauth2"]
    assert refused_meta["backend"] == "inventory"
    assert refused_meta["error"]
    assert no["comment"] == f"refused · {refused_meta['error']} · inventory"
    assert "fingerprint" not in refused_meta
    assert dumped["/stock"].marked == ":default:"
    assert dumped["/stock"].comment == no["comment"]


def test_mitmweb_shows_what_the_token_says_and_why_the_backend_refused_it(
    devservers: DevServersProcess, start_mitmweb: StartMitmweb
) -> None:
    """A JWT access token's claims on the flow and in the status (decoded, not verified); a
    backend's insufficient_scope told on the flow, in the status and in the log, with neither a
    new token nor a replay."""
    devservers.configure(jwt_tokens=True, token_audience="orders-api")
    web = start_mitmweb(devservers.backend_toml("orders", scope="orders:read"))
    with web.proxy_client() as client:
        assert client.get(f"{devservers.backend_url}/orders/1").status_code == 200
        challenge = 'Bearer realm="orders", error="insufficient_scope", scope="orders:write"'
        devservers.configure(backend_status=403, backend_challenge=challenge)
        refused = client.post(f"{devservers.backend_url}/orders", json={"item": 7})
    assert refused.status_code == 403  # the backend's own answer
    assert devservers.token_requests() == 1  # no renewal ...
    assert len(devservers.backend_requests()) == 2  # ... and no replay

    _, flows = web.flows_json()
    ok, scoped = sorted(flows, key=lambda f: f["request"]["timestamp_start"])
    assert re.fullmatch(
        r"fetched · \d+ s left · orders · aud orders-api · scope orders:read", ok["comment"]
    ), ok["comment"]
    assert scoped["comment"] == (
        "insufficient scope · wants orders:write; the token has orders:read · orders"
    )
    dumped = sorted(web.flows_dump(), key=lambda f: f.request.timestamp_start)
    claims = dumped[0].metadata["oauth2"]["claims"]
    assert claims == {
        "verified": False,
        "iss": devservers.issuer,
        "sub": "demo-client",
        "aud": "orders-api",
        "scope": "orders:read",
        "client_id": "demo-client",
        "iat": claims["iat"],
        "exp": claims["iat"] + 3600,
    }
    assert dumped[1].metadata["oauth2"]["insufficient_scope"] == {
        "wanted": ["orders:write"],
        "token_has": ["orders:read"],
    }
    status = json.loads(web.command("oauth.status")["value"])["orders"]
    assert status["claims"] == claims
    assert (status["scope_refusals"], status["last_scope_refusal"]) == (
        1,
        "wants orders:write; the token has orders:read",
    )
    assert status["replays"] == 0
    assert "backend orders: the backend refused the token for lack of scope" in web.output()


def test_mitmweb_filters_find_the_flows(
    devservers: DevServersProcess, start_mitmweb: StartMitmweb
) -> None:
    """The filters docs/operations.md names, applied by mitmweb itself (``/flows/dump?filter=``)."""
    web = start_mitmweb(devservers.backend_toml("orders"))
    other_name = devservers.backend_url.replace("127.0.0.1", "localhost")
    with web.proxy_client() as client:
        assert client.get(f"{devservers.backend_url}/a").status_code == 200
        assert client.get(f"{devservers.backend_url}/b").status_code == 200
        # Not a configured backend (another name for the same server): no token, no story.
        assert client.get(f"{other_name}/c").status_code == 401

    def paths(flow_filter: str) -> list[str]:
        return sorted(f.request.path for f in web.flows_dump(flow_filter))

    assert paths("~meta oauth2") == ["/a", "/b"]
    assert paths("!~meta oauth2") == ["/c"]
    assert paths("~comment ^fetched") == ["/a"]
    assert paths("~comment ^cache") == ["/b"]


def test_the_command_bar_runs_the_commands(
    devservers: DevServersProcess, start_mitmweb: StartMitmweb
) -> None:
    """oauth.status, oauth.refresh and oauth.purge through mitmweb's own /commands API, the
    route its command bar posts to (names of lower-case letters and dots only)."""
    web = start_mitmweb(devservers.backend_toml("orders"))

    def status() -> dict[str, Any]:
        answer = web.command("oauth.status")
        assert set(answer) == {"value"}, answer
        report: dict[str, Any] = json.loads(answer["value"])
        assert set(report) == {"orders"}, report
        return dict(report["orders"])

    def fingerprint() -> str:
        with web.proxy_client() as client:
            assert client.get(f"{devservers.backend_url}/orders").status_code == 200
        (meta,) = [f.metadata["oauth2"] for f in web.flows_dump()][-1:]
        return str(meta["fingerprint"])

    first = fingerprint()
    now = status()
    assert (now["token"], now["fetches"], now["store_ok"]) == ("memory", 1, True), now
    assert 3500 < now["token_left_s"] <= 3600
    assert devservers.token_requests() == 1

    assert web.command("oauth.refresh", "orders") == {"value": None}
    until(lambda: status()["fetches"] == 2, "a renewal after oauth.refresh")
    assert devservers.token_requests() == 2
    renewed = fingerprint()
    assert renewed != first

    assert web.command("oauth.purge", "orders") == {"value": None}
    until(lambda: status()["token"] == "none", "the token gone after oauth.purge")
    assert devservers.token_requests() == 2
    fetched = fingerprint()  # the next request fetches one
    assert fetched not in (first, renewed)
    assert devservers.token_requests() == 3
    assert status()["fetches"] == 3

    assert web.command("oauth.purge", "nope") == {"error": "oauth2: no backend named nope"}
    tokens = [r["authorization"][0].removeprefix("Bearer ") for r in devservers.backend_requests()]
    assert len(set(tokens)) == 3
    assert not any(token in web.command("oauth.status")["value"] for token in tokens)


@pytest.mark.parametrize(
    ("args", "columns"),
    [
        ((), ["tls", "icon", "path", "method", "status", "size", "time", "comment"]),
        (("--set", "web_columns=path", "--set", "web_columns=comment"), ["path", "comment"]),
    ],
    ids=["default", "set-by-the-caller"],
)
def test_scripts_web_shows_the_comment_column(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mitm_confdir: Path,
    args: tuple[str, ...],
    columns: list[str],
) -> None:
    """scripts/web adds the Comment column after mitmweb's own, unless web_columns is given."""
    web = Mitmweb(
        toml_backend(
            name="api",
            hosts=["api.test"],
            token_url="https://login.test/token",
            client_id="c",
            client_secret="s",
        ),
        *args,
        config_path=tmp_path / "backends.toml",
        confdir=mitm_confdir,
        program=REPO / "scripts" / "web",
        script=None,  # scripts/web loads the addon itself
        env=subprocess_env(OAUTH2_VENV=sys.prefix),  # this interpreter's environment
    )
    report_output(request, web)
    try:
        web.start()
        assert web.api is not None
        option = web.api.get("/options").json()["web_columns"]
    finally:
        web.stop()
    assert option["value"] == columns
    assert option["default"] == ["tls", "icon", "path", "method", "status", "size", "time"]
