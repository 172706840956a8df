"""Faults of the authorization server and the backend, survived by the real mitmdump: every
request is still answered correctly, with a valid token when one can be had, else with a 502/503
problem+json while the backend receives nothing.

One mitmdump serves the whole table: each fault is a backend of its own (its name is the fault's
id, its path prefix `/<id>` on the devservers' backend, its own client at the token server), so
failure memory, tokens and counts never mix between faults. `FAULTS` is counted in
docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mitm_oauth2.testing import free_port
from tests.hardening.fault_scenarios import DEFAULT_KNOBS
from tests.hardening.fault_scenarios import SECRET
from tests.hardening.fault_scenarios import Bench
from tests.hardening.fault_scenarios import Fault
from tests.hardening.fault_scenarios import accepted
from tests.hardening.fault_scenarios import backend_rejects_always
from tests.hardening.fault_scenarios import backend_rejects_revoked
from tests.hardening.fault_scenarios import fake
from tests.hardening.fault_scenarios import refused
from tests.hardening.fault_scenarios import refused_then_recovers
from tests.hardening.fault_scenarios import served
from tests.hardening.fault_scenarios import served_until_expiry
from tests.hardening.faulty_idp import FaultyIdp
from tests.hardening.faulty_idp import TlsFaults
from tests.hardening.launch import Launcher
from tests.support.devservers import DevServersProcess

FAULTS = [
    pytest.param(
        Fault(
            refused,
            # a port free a moment ago: nothing listens there, the connection is refused
            token_url=lambda servers, idp: f"http://127.0.0.1:{free_port()}/token",
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
            token_url=lambda servers, idp: servers.token_url.replace("http://", "https://"),
            cause="WRONG_VERSION_NUMBER",
            attempts=None,  # the server sees a garbled request, not a token request
        ),
        id="idp-plain-http-on-https-url",
    ),
    pytest.param(
        Fault(
            refused,
            token_url=fake("tls-only"),  # http:// to a TLS-only server
            # it closes on the plaintext, with an RST or a FIN depending on timing
            cause="token endpoint",
            attempts=accepted("tls-only"),
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


def config(servers: DevServersProcess, idp: FaultyIdp) -> str:
    tables = []
    for param in FAULTS:
        (fault,) = param.values
        assert isinstance(fault, Fault)
        assert param.id is not None
        tables.append(
            servers.backend_toml(
                param.id,
                path_prefix=f"/{param.id}",
                token_url=fault.token_url(servers, idp),
                client_id=param.id,
                client_secret=SECRET,
                **fault.fields,
            )
        )
    return "\n".join(tables)


@pytest.fixture(scope="module")
def bench(request: pytest.FixtureRequest, launcher: Launcher) -> Iterator[Bench]:
    directory = launcher.workdir
    servers = launcher.devservers(clients=dict.fromkeys(NAMES, SECRET))
    (directory / "trusted-ca.pem").write_bytes(launcher.tls.ca_cert.read_bytes())
    idp = FaultyIdp(TlsFaults.make(directory, launcher.tls.ca, launcher.tls.ca_cert))
    try:
        yield Bench(servers, idp, launcher.proxy(config(servers, idp)))
    finally:
        idp.stop()


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
