"""Faults of the authorization server and the backend, survived by the real mitmdump: every
request is still answered correctly, with a valid token when one can be had, else with a 502/503
problem+json while the backend receives nothing.

One mitmdump serves the whole table: each fault is a backend of its own (its name is the fault's
id, its path prefix `/<id>` on the devservers' backend, its own client at the token server), so
failure memory, tokens and counts never mix between faults. `FAULTS` is counted in the README.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench import assert_problem
from bench import assert_served
from bench import backend_seen
from bench import crowd
from bench import poll
from bench import report_output
from bench import start_proxy
from faulty_idp import FaultyIdp
from faulty_idp import TlsFaults
from faulty_idp import refused_port
from harness import DevServersProcess
from harness import TlsFiles
from proxies import Proxy

from mitm_oauth2.devservers import KNOBS

SECRET = "fault-table secret"
DEFAULT_KNOBS = {name: default for name, (default, _) in KNOBS.items()}


@dataclass
class Bench:
    servers: DevServersProcess
    idp: FaultyIdp
    proxy: Proxy

    def url(self, name: str, path: str = "x") -> str:
        return f"{self.servers.backend_url}/{name}/{path}"

    def token_attempts(self, name: str) -> int:
        """Token requests of this fault's client that the dev token server logged."""
        return sum(1 for e in self.servers.token_log() if e["client_id"] == name)


Scenario = Callable[[Bench, str, "Fault"], None]


@dataclass(frozen=True)
class Fault:
    scenario: Scenario
    # where this fault's token requests go (default: the dev token server)
    token_url: Callable[[Bench], str] = lambda bench: bench.servers.token_url
    fields: dict[str, Any] = field(default_factory=dict)  # more keys of its [[backend]]
    knobs: dict[str, Any] = field(default_factory=dict)  # dev token server, while it lasts
    status: int = 502  # what callers get while the fault lasts (refusals)
    cause: str = ""  # in the problem's detail
    # token requests that reached the authorization server (None: not countable)
    attempts: Callable[[Bench, str], int] | None = Bench.token_attempts


def fake(mode: str, scheme: str = "http") -> Callable[[Bench], str]:
    return lambda bench: bench.idp.url(mode, scheme)


def accepted(mode: str) -> Callable[[Bench, str], int]:
    return lambda bench, name: bench.idp.accepted(mode)


def refused(bench: Bench, name: str, fault: Fault) -> None:
    """Three callers at once: each gets the problem, the backend nothing, the IdP one try."""
    bench.servers.configure(**fault.knobs)
    answers = crowd(bench.proxy, [bench.url(name, str(i)) for i in range(3)])
    for answer in answers:
        assert_problem(answer, status=fault.status, backend=name, cause=fault.cause)
    assert backend_seen(bench.servers, f"/{name}/") == []
    if fault.attempts is not None:
        assert fault.attempts(bench, name) == 1


def served(bench: Bench, name: str, fault: Fault) -> None:
    """Three callers at once: each is served with the one token a single request fetched."""
    bench.servers.configure(**fault.knobs)
    answers = crowd(bench.proxy, [bench.url(name, str(i)) for i in range(3)])
    assert len({assert_served(answer) for answer in answers}) == 1
    assert all(r["ok"] for r in backend_seen(bench.servers, f"/{name}/"))
    assert bench.token_attempts(name) == 1


def refused_then_recovers(bench: Bench, name: str, fault: Fault) -> None:
    """Refused while it lasts; once the IdP is well again, served after the backoff ends,
    with one more token request (callers meanwhile get the remembered failure)."""
    refused(bench, name, fault)
    bench.servers.configure(**DEFAULT_KNOBS)
    with bench.proxy.client() as client:

        def until_served() -> httpx.Response | None:
            answer = client.get(bench.url(name))
            if answer.status_code == 200:
                return answer
            assert_problem(answer, status=fault.status, backend=name, cause=fault.cause)
            return None

        assert_served(poll(until_served, "served again after the IdP recovered"))
    assert bench.token_attempts(name) == 2


def served_until_expiry(bench: Bench, name: str, fault: Fault) -> None:
    """IdP down while a 3 s token is held: every request until its expiry is served with it
    (its renewal, tried 1.5 s in, fails), then refused; never sent with an expired token."""
    bench.servers.configure(expires_in=3)
    with bench.proxy.client() as client:
        first = assert_served(client.get(bench.url(name, "warm")))
        bench.servers.configure(down=True)
        statuses: list[int] = []

        def until_refused() -> httpx.Response | None:
            answer = client.get(bench.url(name))
            statuses.append(answer.status_code)
            return answer if answer.status_code != 200 else None

        last = poll(until_refused, "refused once the token expired", step=0.2)
    assert_problem(last, status=502, backend=name, cause=fault.cause)
    assert statuses.count(200) >= 5
    seen = backend_seen(bench.servers, f"/{name}/")
    assert all(r["ok"] for r in seen)
    assert len(seen) == statuses.count(200) + 1
    assert first
    assert bench.token_attempts(name) >= 2  # the renewal was tried while the token was valid


def backend_rejects_revoked(bench: Bench, name: str, fault: Fault) -> None:
    """The authorization server forgot its tokens: ten callers at once get 401 from the backend;
    one token request renews it, each request is replayed once and served."""
    with bench.proxy.client() as client:
        assert_served(client.get(bench.url(name, "warm")))
    bench.servers.revoke()
    answers = crowd(bench.proxy, [bench.url(name, str(i)) for i in range(10)])
    assert len({assert_served(answer) for answer in answers}) == 1
    assert bench.token_attempts(name) == 2


def backend_rejects_always(bench: Bench, name: str, fault: Fault) -> None:
    """A backend that answers 401 to every token: five callers at once get its 401 after one
    replay each, and the storm costs one token request, not one per caller."""
    with bench.proxy.client() as client:
        assert_served(client.get(bench.url(name, "warm")))
    bench.servers.configure(backend_status=401, backend_challenge='Bearer error="invalid_token"')
    answers = crowd(bench.proxy, [bench.url(name, str(i)) for i in range(5)])
    with bench.proxy.client() as client:
        answers.append(client.get(bench.url(name, "after")))  # the fresh token was rejected too
    assert [answer.status_code for answer in answers] == [401] * 6
    assert all(answer.json()["error"] == "forced" for answer in answers)  # the backend's own
    assert len(backend_seen(bench.servers, f"/{name}/")) == 1 + 5 * 2 + 1
    assert bench.token_attempts(name) == 2


FAULTS = [
    pytest.param(
        Fault(
            refused,
            token_url=lambda bench: f"http://127.0.0.1:{refused_port()}/token",
            cause="cannot connect to token endpoint",
            attempts=None,
        ),
        id="idp-down-connection-refused",
    ),
    pytest.param(
        Fault(refused, knobs={"down": True}, cause="closed the connection without an answer"),
        id="idp-closes-without-answer",
    ),
    pytest.param(
        Fault(
            refused,
            knobs={"delay": 3},
            fields={"token_timeout": 1},
            cause="token endpoint timed out after 1 s",
            attempts=None,  # the slow server logs the request only when it answers
        ),
        id="idp-slow-beyond-token-timeout",
    ),
    pytest.param(
        Fault(served, knobs={"delay": 1}, fields={"token_timeout": 5}),
        id="idp-slow-within-token-timeout",
    ),
    pytest.param(
        Fault(
            refused,
            token_url=fake("silent"),
            fields={"token_timeout": 1},
            cause="token endpoint timed out after 1 s",
            attempts=accepted("silent"),
        ),
        id="idp-accepts-never-answers",
    ),
    pytest.param(
        Fault(
            refused,
            token_url=fake("reset"),
            cause="connection to token endpoint broke",
            attempts=accepted("reset"),
        ),
        id="idp-resets-connection",
    ),
    pytest.param(
        Fault(
            refused,
            token_url=fake("mid-response"),
            cause="closed the connection without an answer",
            attempts=accepted("mid-response"),
        ),
        id="idp-closes-mid-response",
    ),
    pytest.param(
        Fault(
            refused,
            token_url=fake("garbage"),
            cause="closed the connection without an answer",
            attempts=accepted("garbage"),
        ),
        id="idp-answers-not-http",
    ),
    *(
        pytest.param(
            Fault(
                refused,
                token_url=fake(f"tls:{name}", "https"),
                fields={"token_ca_bundle": "trusted-ca.pem"},
                cause="CERTIFICATE_VERIFY_FAILED",
                attempts=accepted(f"tls:{name}"),
            ),
            id=f"idp-tls-{name}",
        )
        for name in ("unknown-ca", "wrong-host", "expired")
    ),
    pytest.param(
        Fault(
            refused,
            # https:// to the dev token server, which speaks plain HTTP: no TLS handshake
            token_url=lambda bench: bench.servers.token_url.replace("http://", "https://"),
            cause="WRONG_VERSION_NUMBER",
            attempts=None,  # the server sees a garbled request, not a token request
        ),
        id="idp-plain-http-on-https-url",
    ),
    pytest.param(
        Fault(
            refused,
            token_url=fake("tls:unknown-ca"),  # http:// to a TLS-only server
            # it closes on the plaintext, with an RST or a FIN depending on timing
            cause="token endpoint",
            attempts=None,  # shares its listener with idp-tls-unknown-ca
        ),
        id="idp-tls-only-on-http-url",
    ),
    pytest.param(
        Fault(refused_then_recovers, knobs={"status": 500}, cause="HTTP 500"),
        id="idp-500-then-recovers",
    ),
    pytest.param(
        Fault(
            refused_then_recovers,
            knobs={"status": 503, "retry_after": 2},
            status=503,
            cause="HTTP 503",
        ),
        id="idp-503-retry-after-then-recovers",
    ),
    pytest.param(
        Fault(served_until_expiry, cause="closed the connection without an answer"),
        id="idp-down-while-token-cached",
    ),
    pytest.param(Fault(backend_rejects_revoked), id="backend-401-storm-revoked-token"),
    pytest.param(Fault(backend_rejects_always), id="backend-401-storm-every-token"),
]
NAMES = [param.id for param in FAULTS]


def config(bench: Bench) -> str:
    tables = []
    for param in FAULTS:
        (fault,) = param.values
        assert isinstance(fault, Fault)
        assert param.id is not None
        tables.append(
            bench.servers.backend_toml(
                param.id,
                path_prefix=f"/{param.id}",
                token_url=fault.token_url(bench),
                client_id=param.id,
                client_secret=SECRET,
                **fault.fields,
            )
        )
    return "\n".join(tables)


@pytest.fixture(scope="module")
def bench(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_ca: TlsFiles,
    mitm_confdir: Path,
) -> Iterator[Bench]:
    directory = tmp_path_factory.mktemp("faults")
    servers = DevServersProcess(clients=dict.fromkeys(NAMES, SECRET), cwd=directory)
    report_output(request, servers)
    (directory / "trusted-ca.pem").write_bytes(tls_ca.ca_cert.read_bytes())
    idp = FaultyIdp(TlsFaults.make(directory, tls_ca.ca, tls_ca.ca_cert))
    proxy: Proxy | None = None
    try:
        stub = Bench(servers, idp, proxy=None)  # type: ignore[arg-type]
        proxy = start_proxy(
            directory, mitm_confdir, tls_ca.ca_cert, config(stub), name="mitmdump (faults)"
        )
        report_output(request, proxy)
        yield Bench(servers, idp, proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        idp.stop()
        servers.stop()


@pytest.mark.parametrize("fault", FAULTS)
def test_requests_are_answered_correctly_through(
    fault: Fault, bench: Bench, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.id
    try:
        fault.scenario(bench, name, fault)
    finally:
        bench.servers.configure(**DEFAULT_KNOBS)
    assert bench.proxy.returncode is None  # still running
