"""Config keys of the JWT-bearer grant (RFC 7523 §2.1): `grant = "jwt_bearer"` with Google's
service-account key file or with private_key_file and the assertion_* keys; every bad value
refused with the file, the backend and the key named, and no key material shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from mitm_oauth2.client.auth import ASSERTION_LIFETIME
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import BearerAssertion
from mitm_oauth2.model.credentials import GrantType
from tests.support.config_helpers import backend
from tests.support.config_helpers import load
from tests.support.config_helpers import refused
from tests.support.key_material import private_pem

TOKEN_URI = "https://oauth2.googleapis.com/token"
EMAIL = "reader@project-1.iam.gserviceaccount.com"
GOOGLE = {
    "grant": "jwt_bearer",
    "client_secret": None,
    "client_id": None,
    "token_url": None,
    "service_account_file": "sa.json",
    "scope": "https://www.googleapis.com/auth/cloud-platform",
}
GENERIC = {
    "grant": "jwt_bearer",
    "client_secret": None,
    "private_key_file": "rsa.pem",
    "key_id": "k1",
}


def _account(key_pem: str, **changes: Any) -> str:
    document = {
        "type": "service_account",
        "project_id": "project-1",
        "private_key_id": "0123abcd",
        "private_key": key_pem,
        "client_email": EMAIL,
        "client_id": "1234567890",
        "token_uri": TOKEN_URI,
    }
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None})


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    rsa_pem = private_pem(rsa.generate_private_key(65537, 2048)).decode("ascii")
    ec_pem = private_pem(ec.generate_private_key(ec.SECP256R1())).decode("ascii")
    return {
        "rsa.pem": rsa_pem,
        "cert.pem": trustme.CA().cert_pem.bytes().decode(),
        "sa.json": _account(rsa_pem),
        "user.json": json.dumps(
            {"type": "authorized_user", "client_id": "x", "refresh_token": "y"}
        ),
        "external.json": json.dumps({"type": "external_account", "audience": "//iam"}),
        "ec-sa.json": _account(ec_pem),
        "no-key-sa.json": _account(rsa_pem, private_key=None),
        "cert-sa.json": _account(trustme.CA().cert_pem.bytes().decode()),
        "http-sa.json": _account(rsa_pem, token_uri="http://oauth2.example/token"),
        "array.json": "[]",
        "text.txt": "not json\n",
    }


@pytest.fixture(autouse=True)
def written(tmp_path: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)


def credentials(tmp_path: Path, **overrides: Any):
    (api,) = load(tmp_path, backend(**overrides)).backends
    return api.grant.credentials


def test_a_google_service_account(tmp_path: Path) -> None:
    creds = credentials(tmp_path, **GOOGLE)
    assert creds.grant is GrantType.JWT_BEARER
    assert creds.auth_method is AuthMethod.NONE
    assert creds.token_url == TOKEN_URI  # from the file
    assert creds.client_id == EMAIL
    bearer = creds.bearer
    assert bearer is not None
    assert (bearer.issuer, bearer.subject, bearer.audience) == (EMAIL, None, TOKEN_URI)
    assert (bearer.lifetime, bearer.scope_claim) == (3600, True)
    assert (bearer.key.algorithm, bearer.key.key_id) == ("RS256", "0123abcd")


def test_a_service_account_acting_for_a_user_and_another_endpoint(tmp_path: Path) -> None:
    """Domain-wide delegation: `sub` is the user; token_url given wins over the file's."""
    changes = {"token_url": "https://oauth2.example/token", "assertion_subject": "ana@example.com"}
    creds = credentials(tmp_path, **{**GOOGLE, **changes})
    assert creds.token_url == "https://oauth2.example/token"
    assert creds.bearer is not None
    assert creds.bearer.subject == "ana@example.com"
    assert creds.bearer.audience == TOKEN_URI


def test_generic_assertion_defaults_to_the_client(tmp_path: Path) -> None:
    creds = credentials(tmp_path, **GENERIC)
    assert creds.grant is GrantType.JWT_BEARER
    assert creds.client_secret is None
    assert creds.signing_key is None  # the key signs the grant, not a client assertion
    bearer = creds.bearer
    assert isinstance(bearer, BearerAssertion)
    assert (bearer.issuer, bearer.subject, bearer.audience) == ("my-client", "my-client", None)
    assert (bearer.lifetime, bearer.scope_claim) == (ASSERTION_LIFETIME, False)
    assert bearer.key.key_id == "k1"


def test_generic_assertion_as_salesforce_wants_it(tmp_path: Path) -> None:
    creds = credentials(
        tmp_path,
        **{**GENERIC, "client_id": None},
        assertion_issuer="3MVG9-consumer-key",
        assertion_subject="integration@example.com",
        assertion_audience="https://login.salesforce.com",
    )
    assert creds.client_id == ""
    assert creds.bearer is not None
    assert creds.bearer.issuer == "3MVG9-consumer-key"
    assert creds.bearer.subject == "integration@example.com"
    assert creds.bearer.audience == "https://login.salesforce.com"


def test_client_authentication_on_top_of_the_grant(tmp_path: Path) -> None:
    creds = credentials(
        tmp_path, **{**GENERIC, "client_secret": "s"}, auth_method="client_secret_post"
    )
    assert creds.auth_method is AuthMethod.CLIENT_SECRET_POST
    assert creds.client_secret is not None


BAD = [
    ({"grant": "implicit"}, "grant", "is not one of"),
    ({**GOOGLE, "service_account_file": "missing.json"}, "service_account_file", "cannot read"),
    ({**GOOGLE, "service_account_file": "text.txt"}, "service_account_file", "is not JSON"),
    ({**GOOGLE, "service_account_file": "array.json"}, "service_account_file", "no credentials"),
    ({**GOOGLE, "service_account_file": "user.json"}, "service_account_file", "'authorized_user'"),
    ({**GOOGLE, "service_account_file": "external.json"}, "service_account_file", "external"),
    ({**GOOGLE, "service_account_file": "no-key-sa.json"}, "service_account_file", "private_key"),
    ({**GOOGLE, "service_account_file": "ec-sa.json"}, "service_account_file", "not RSA"),
    ({**GOOGLE, "service_account_file": "cert-sa.json"}, "service_account_file", "not a PEM"),
    ({**GOOGLE, "service_account_file": "http-sa.json"}, "service_account_file", "https"),
    ({**GOOGLE, "private_key_file": "rsa.pem"}, "private_key_file", "service_account_file gives"),
    ({**GOOGLE, "assertion_issuer": "x"}, "assertion_issuer", "service_account_file gives"),
    ({**GOOGLE, "assertion_audience": "x"}, "assertion_audience", "service_account_file gives"),
    ({"service_account_file": "sa.json"}, "service_account_file", 'only for grant = "jwt_bearer"'),
    ({"assertion_issuer": "x"}, "assertion_issuer", "only for grant"),
    ({"assertion_subject": "x"}, "assertion_subject", "only for grant"),
    ({**GENERIC, "private_key_file": None}, "private_key_file", "missing"),
    ({**GENERIC, "private_key_file": "cert.pem"}, "private_key_file", "not an unencrypted PEM"),
    ({**GENERIC, "signing_alg": "ES256"}, "signing_alg", "does not fit the key"),
    ({**GENERIC, "client_id": None}, "assertion_issuer", "missing"),
    ({**GENERIC, "assertion_audience": "issuer"}, "assertion_audience", "needs the issuer"),
    ({**GENERIC, "auth_method": "private_key_jwt"}, "auth_method", "signs the grant itself"),
    ({**GENERIC, "client_secret": "s"}, "client_secret", "not used by auth_method none"),
    ({**GENERIC, "token_url": None}, "token_url", "exactly one of token_url and issuer"),
    (
        {
            **GENERIC,
            "client_id": None,
            "client_secret": "s",
            "assertion_issuer": "x",
            "auth_method": "client_secret_post",
        },
        "client_id",
        "missing",
    ),
]


@pytest.mark.parametrize(("overrides", "key", "words"), BAD)
def test_bad_grant_settings(
    tmp_path: Path, overrides: dict[str, Any], key: str, words: str
) -> None:
    message = refused(tmp_path, backend(**overrides))
    assert f"backend 'api': key '{key}'" in message
    assert words in message
    assert "BEGIN" not in message
    assert "PRIVATE" not in message
