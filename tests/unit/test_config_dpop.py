"""Config keys of DPoP: `dpop = true` with dpop_key_file (EC P-256 or RSA) or a key made at
start-up; bad values refused with the file, the backend and the key named, no key shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.config_helpers import backend
from tests.support.config_helpers import load
from tests.support.config_helpers import refused
from tests.support.key_material import private_pem


@pytest.fixture(autouse=True)
def key_files(tmp_path: Path) -> None:
    (tmp_path / "ec.pem").write_bytes(private_pem(ec.generate_private_key(ec.SECP256R1())))
    (tmp_path / "rsa.pem").write_bytes(private_pem(rsa.generate_private_key(65537, 2048)))
    (tmp_path / "p384.pem").write_bytes(private_pem(ec.generate_private_key(ec.SECP384R1())))
    (tmp_path / "cert.pem").write_bytes(trustme.CA().cert_pem.bytes())


def dpop_of(tmp_path: Path, **overrides: Any):
    (api,) = load(tmp_path, backend(**overrides)).backends
    return api.grant.credentials.dpop


@pytest.mark.parametrize(("file", "algorithm"), [("ec.pem", "ES256"), ("rsa.pem", "RS256")])
def test_a_key_file(tmp_path: Path, file: str, algorithm: str) -> None:
    key = dpop_of(tmp_path, dpop=True, dpop_key_file=file)
    assert key is not None
    assert key.algorithm == algorithm
    assert "PRIVATE" not in repr(key)


def test_a_key_made_at_start_up(tmp_path: Path) -> None:
    key = dpop_of(tmp_path, dpop=True)
    assert key is not None
    assert key.algorithm == "ES256"


def test_no_dpop_no_key(tmp_path: Path) -> None:
    assert dpop_of(tmp_path) is None


BAD = [
    ({"dpop_key_file": "ec.pem"}, "dpop_key_file", "only with dpop = true"),
    ({"dpop": "yes"}, "dpop", "must be"),
    ({"dpop": True, "dpop_key_file": "p384.pem"}, "dpop_key_file", "P-256"),
    ({"dpop": True, "dpop_key_file": "cert.pem"}, "dpop_key_file", "not an unencrypted PEM"),
    ({"dpop": True, "dpop_key_file": "nope.pem"}, "dpop_key_file", "cannot read"),
    ({"dpop": True, "header": "X-Token"}, "header", "Authorization: DPoP"),
    ({"dpop": True, "header_format": "Token {token}"}, "header_format", "Authorization: DPoP"),
]


@pytest.mark.parametrize(("overrides", "key", "words"), BAD)
def test_bad_dpop_settings(tmp_path: Path, overrides: dict[str, Any], key: str, words: str) -> None:
    message = refused(tmp_path, backend(**overrides))
    assert f"backend 'api': key '{key}'" in message
    assert words in message
    assert "BEGIN" not in message


def test_a_made_key_stays_when_the_configuration_is_read_again(tmp_path: Path) -> None:
    """A re-read file must not change the key: the token bound to it would be lost."""
    first = dpop_of(tmp_path, dpop=True)
    again = dpop_of(tmp_path, dpop=True)
    other = dpop_of(tmp_path, dpop=True, name="other")
    assert first == again
    assert other != first
