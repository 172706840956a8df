"""The IdP and backend fault table's bench and scenarios (the table is in test_faults.py).

A `Fault` is a backend of its own on the one mitmdump of the table: where its token requests
go, the dev token server's knobs while it lasts, and the scenario that checks every answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import httpx

from mitm_oauth2.devservers import KNOBS
from tests.hardening.fault_rig import assert_problem
from tests.hardening.fault_rig import assert_served
from tests.hardening.fault_rig import backend_seen
from tests.hardening.fault_rig import crowd
from tests.hardening.fault_rig import poll
from tests.hardening.faulty_idp import FaultyIdp
from tests.support.devservers import DevServersProcess
from tests.support.proxies import Proxy

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
TokenUrl = Callable[[DevServersProcess, FaultyIdp], str]


@dataclass(frozen=True)
class Fault:
    scenario: Scenario
    # where this fault's token requests go (default: the dev token server)
    token_url: TokenUrl = lambda servers, idp: servers.token_url
    fields: dict[str, Any] = field(default_factory=dict)  # more keys of its [[backend]]
    knobs: dict[str, Any] = field(default_factory=dict)  # dev token server, while it lasts
    status: int = 502  # what callers get while the fault lasts (refusals)
    cause: str = ""  # in the problem's detail
    # token requests that reached the authorization server (None: not countable)
    attempts: Callable[[Bench, str], int] | None = Bench.token_attempts


def fake(mode: str, scheme: str = "http") -> TokenUrl:
    return lambda servers, idp: idp.url(mode, scheme)


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
            if answer.status_code != 200:
                return answer
            assert assert_served(answer) == first  # the token held, still valid
            return None

        last = poll(until_refused, "refused once the token expired", step=0.2)
    assert_problem(last, status=502, backend=name, cause=fault.cause)
    assert statuses.count(200) >= 5
    served = statuses.count(200) + 1  # and the warm-up
    seen = backend_seen(bench.servers, f"/{name}/")
    assert all(r["ok"] for r in seen[:served])
    # The refused request reached the backend only if its token expired on the way there (sent
    # in its last moment): then the backend refused it, and no fresh token could replay it.
    assert [r["ok"] for r in seen[served:]] in ([], [False])
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
