"""Which client certificate goes to which server for certificate-bound backends: their hosts
only, one certificate per host."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trustme

from mitm_oauth2.bound_certs import BoundCertificates
from mitm_oauth2.config.backend import BackendConfig
from mitm_oauth2.config.hosts import parse_host_pattern
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import TlsIdentity
from mitm_oauth2.model.credentials import TokenTransport


def identity(tmp_path: Path, name: str) -> TlsIdentity:
    issued = trustme.CA().issue_cert(f"{name}.test")
    cert, key = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return TlsIdentity(str(cert), str(key), name)


def bound(
    make_grant, name: str, hosts: list[str], who: TlsIdentity, on: bool = True
) -> BackendConfig:
    grant = make_grant()
    credentials = dataclasses.replace(
        grant.credentials,
        auth_method=AuthMethod.TLS_CLIENT_AUTH,
        client_secret=None,
        transport=TokenTransport(client_cert=who),
    )
    return BackendConfig(
        name=name,
        hosts=tuple(parse_host_pattern(host) for host in hosts),
        grant=dataclasses.replace(grant, credentials=credentials),
        certificate_bound=on,
    )


def test_only_the_bound_backends_hosts(make_grant, tmp_path: Path) -> None:
    mine, theirs = identity(tmp_path, "mine"), identity(tmp_path, "theirs")
    certificates = BoundCertificates(
        (
            bound(make_grant, "bank", ["bank.test", "*.bank.test"], mine),
            bound(make_grant, "plain", ["plain.test"], theirs, on=False),
        )
    )
    assert certificates
    assert certificates._router.match("bank.test", 443, "https") == mine
    assert certificates._router.match("api.bank.test", 443, "https") == mine
    assert certificates._router.match("plain.test", 443, "https") is None
    assert certificates._router.match("bank.test", 8443, "https") is None
    assert not BoundCertificates()


def test_one_certificate_per_host(make_grant, tmp_path: Path) -> None:
    mine, theirs = identity(tmp_path, "mine"), identity(tmp_path, "theirs")
    same = BoundCertificates(
        (bound(make_grant, "a", ["bank.test"], mine), bound(make_grant, "b", ["bank.test"], mine))
    )
    assert same._router.match("bank.test", 443, "https") == mine
    with pytest.raises(ValueError, match=r"'a' and 'b' are certificate_bound on bank\.test"):
        BoundCertificates(
            (
                bound(make_grant, "a", ["bank.test"], mine),
                bound(make_grant, "b", ["bank.test"], theirs),
            )
        )
