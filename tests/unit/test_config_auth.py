"""Config keys of client authentication: token_url or issuer, auth_method and what each method
needs (secret, basic_encoding, private key and its algorithm, certificate); every bad value
refused with the file, the backend and the key named, and no secret or key material shown."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from mitm_oauth2.config.watch import read_config
from mitm_oauth2.model.credentials import AssertionAudience
from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import BasicEncoding
from mitm_oauth2.model.credentials import TlsIdentity
from tests.support.config_helpers import SECRET
from tests.support.config_helpers import backend
from tests.support.config_helpers import load
from tests.support.config_helpers import refused
from tests.support.config_helpers import write
from tests.support.key_material import private_pem

NO_SECRET = {"client_secret": None}
PKJ = {"auth_method": "private_key_jwt", "client_secret": None, "private_key_file": "rsa.pem"}
ASSERTION = {
    "auth_method": "client_assertion",
    "client_secret": None,
    "client_assertion_file": "sa.jwt",
}
MTLS = {
    "auth_method": "tls_client_auth",
    "client_secret": None,
    "client_cert_file": "cert.pem",
    "client_key_file": "key.pem",
}


@pytest.fixture(scope="module")
def key_material() -> dict[str, bytes]:
    rsa_key = rsa.generate_private_key(65537, 2048)
    issued = trustme.CA().issue_cert("my-client.test")
    return {
        "rsa.pem": private_pem(rsa_key),
        "ec.pem": private_pem(ec.generate_private_key(ec.SECP256R1())),
        "p384.pem": private_pem(ec.generate_private_key(ec.SECP384R1())),
        "encrypted.pem": private_pem(rsa_key, serialization.BestAvailableEncryption(b"pass")),
        "cert.pem": issued.cert_chain_pems[0].bytes(),
        "key.pem": issued.private_key_pem.bytes(),
        "text.txt": b"not a key at all\n",
        # A platform's token, long expired: the configuration does not judge its time.
        "sa.jwt": jwt.encode({"sub": "app", "exp": 1}, "k" * 32, algorithm="HS256").encode(),
        "unsigned.jwt": jwt.encode({"sub": "app"}, None, algorithm="none").encode(),
    }


@pytest.fixture(autouse=True)
def key_files(tmp_path: Path, key_material: dict[str, bytes]) -> None:
    """The key files, next to the config file (relative paths are relative to it)."""
    for name, content in key_material.items():
        (tmp_path / name).write_bytes(content)


def only(tmp_path: Path, **overrides: Any):
    (api,) = load(tmp_path, backend(**overrides)).backends
    return api.grant.credentials


def test_issuer_instead_of_token_url(tmp_path: Path) -> None:
    creds = only(tmp_path, token_url=None, issuer="https://idp.test/realms/a")
    assert (creds.token_url, creds.issuer) == (None, "https://idp.test/realms/a")


def test_default_is_client_secret_basic_form(tmp_path: Path) -> None:
    creds = only(tmp_path)
    assert creds.auth_method is AuthMethod.CLIENT_SECRET_BASIC
    assert creds.basic_encoding is BasicEncoding.FORM
    assert creds.signing_key is None
    assert creds.transport.client_cert is None


@pytest.mark.parametrize("encoding", ["raw", "form"])
def test_basic_encoding(tmp_path: Path, encoding: str) -> None:
    assert only(tmp_path, basic_encoding=encoding).basic_encoding == BasicEncoding(encoding)


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_jwt"])
def test_other_secret_methods(tmp_path: Path, method: str) -> None:
    creds = only(tmp_path, auth_method=method)
    assert creds.auth_method == method
    assert creds.client_secret.reveal() == SECRET


def test_client_secret_jwt_with_issuer_audience(tmp_path: Path) -> None:
    creds = only(
        tmp_path,
        auth_method="client_secret_jwt",
        token_url=None,
        issuer="https://idp.test",
        assertion_audience="issuer",
    )
    assert creds.assertion_audience is AssertionAudience.ISSUER


@pytest.mark.parametrize(
    ("file", "alg", "expected"),
    [("rsa.pem", None, "RS256"), ("rsa.pem", "PS256", "PS256"), ("ec.pem", None, "ES256")],
)
def test_private_key_jwt(tmp_path: Path, key_material, file, alg, expected: str) -> None:
    creds = only(tmp_path, **{**PKJ, "private_key_file": file, "signing_alg": alg})
    key = creds.signing_key
    assert (key.path, key.algorithm, key.key_id) == (str(tmp_path / file), expected, None)
    assert key.pem.reveal().encode() == key_material[file]
    assert creds.client_secret is None
    assert creds.assertion_audience is AssertionAudience.TOKEN_ENDPOINT
    assert "PRIVATE KEY" not in repr(creds)


def test_private_key_jwt_key_id_and_absolute_path(tmp_path: Path) -> None:
    path = str(tmp_path / "ec.pem")
    creds = only(tmp_path, **{**PKJ, "private_key_file": path, "key_id": "k1"})
    assert (creds.signing_key.path, creds.signing_key.key_id) == (path, "k1")


def test_self_signed_tls_client_auth_and_certificate_bound(tmp_path: Path) -> None:
    text = backend(**{**MTLS, "auth_method": "self_signed_tls_client_auth"}, certificate_bound=True)
    (api,) = load(tmp_path, text).backends
    assert api.grant.credentials.auth_method is AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH
    assert api.grant.credentials.transport.client_cert is not None
    assert api.certificate_bound is True


def test_tls_client_auth(tmp_path: Path) -> None:
    creds = only(tmp_path, **MTLS)
    assert creds.auth_method is AuthMethod.TLS_CLIENT_AUTH
    assert creds.client_secret is None
    pem = (tmp_path / "cert.pem").read_bytes() + (tmp_path / "key.pem").read_bytes()
    assert creds.transport.client_cert == TlsIdentity(
        str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), hashlib.sha256(pem).hexdigest()
    )


def test_client_assertion(tmp_path: Path) -> None:
    creds = only(tmp_path, **ASSERTION)
    assert creds.auth_method is AuthMethod.CLIENT_ASSERTION
    assert creds.assertion_file == str(tmp_path / "sa.jwt")
    assert creds.client_secret is None
    assert creds.signing_key is None


def test_client_assertion_file_is_not_followed(tmp_path: Path) -> None:
    """It is read for each token request; its rotation is no change of configuration."""
    snapshot = read_config(write(tmp_path, backend(**ASSERTION)))
    assert snapshot.config.backends
    assert tmp_path / "sa.jwt" not in [file for file, _ in snapshot.stamp]


BAD = [
    # token_url and issuer: exactly one
    ({"issuer": "https://idp.test"}, "token_url", "exactly one of token_url and issuer"),
    ({"token_url": None}, "token_url", "exactly one of token_url and issuer"),
    ({"token_url": None, "issuer": "http://idp.test"}, "issuer", "https"),
    ({"token_url": None, "issuer": "idp.test"}, "issuer", "absolute"),
    ({"token_url": None, "issuer": "https://idp.test#x"}, "issuer", "fragment"),
    # auth_method
    ({"auth_method": "client_secret"}, "auth_method", "is not one of"),
    ({"auth_method": "Client_Secret_Basic"}, "auth_method", "is not one of"),
    ({"auth_method": 1}, "auth_method", "must be a string"),
    ({"auth_method": "none"}, "auth_method", 'only for grant = "jwt_bearer"'),
    # secrets: required by the secret methods, refused by the others
    ({**NO_SECRET, "auth_method": "client_secret_post"}, "client_secret", "found none"),
    ({**NO_SECRET, "auth_method": "client_secret_jwt"}, "client_secret", "found none"),
    ({**PKJ, "client_secret": SECRET}, "client_secret", "not used by auth_method private_key_jwt"),
    ({**PKJ, "client_secret_env": "API_SECRET"}, "client_secret_env", "not used by"),
    ({**MTLS, "client_secret_file": "text.txt"}, "client_secret_file", "not used by"),
    ({**MTLS, "client_secret": SECRET}, "client_secret", "not used by auth_method tls_client"),
    ({**ASSERTION, "client_secret": SECRET}, "client_secret", "not used by auth_method client_a"),
    # client_assertion_file
    ({**ASSERTION, "client_assertion_file": None}, "client_assertion_file", "missing"),
    ({**ASSERTION, "client_assertion_file": "no.jwt"}, "client_assertion_file", "cannot read"),
    ({**ASSERTION, "client_assertion_file": "."}, "client_assertion_file", "cannot read"),
    ({**ASSERTION, "client_assertion_file": "text.txt"}, "client_assertion_file", "not a JWT"),
    ({**ASSERTION, "client_assertion_file": "cert.pem"}, "client_assertion_file", "not a JWT"),
    ({**ASSERTION, "client_assertion_file": "rsa.pem"}, "client_assertion_file", "not a JWT"),
    ({**ASSERTION, "client_assertion_file": "unsigned.jwt"}, "client_assertion_file", "unsigned"),
    ({**PKJ, "client_assertion_file": "sa.jwt"}, "client_assertion_file", "only for client_ass"),
    ({"client_assertion_file": "sa.jwt"}, "client_assertion_file", "only for client_assertion"),
    ({**ASSERTION, "private_key_file": "rsa.pem"}, "private_key_file", "only for private_key"),
    ({**ASSERTION, "assertion_audience": "issuer"}, "assertion_audience", "only for JWT assert"),
    # basic_encoding
    ({"basic_encoding": "base64"}, "basic_encoding", "is not one of"),
    ({"auth_method": "client_secret_post", "basic_encoding": "raw"}, "basic_encoding", "only"),
    ({**PKJ, "basic_encoding": "form"}, "basic_encoding", "only for client_secret_basic"),
    # private_key_file
    ({**PKJ, "private_key_file": None}, "private_key_file", "missing"),
    ({**PKJ, "private_key_file": "nope.pem"}, "private_key_file", "cannot read"),
    ({**PKJ, "private_key_file": "."}, "private_key_file", "cannot read"),
    ({**PKJ, "private_key_file": "text.txt"}, "private_key_file", "not an unencrypted PEM"),
    ({**PKJ, "private_key_file": "cert.pem"}, "private_key_file", "not an unencrypted PEM"),
    ({**PKJ, "private_key_file": "encrypted.pem"}, "private_key_file", "not an unencrypted"),
    ({**PKJ, "private_key_file": "p384.pem"}, "private_key_file", "P-256"),
    ({"private_key_file": "rsa.pem"}, "private_key_file", "only for private_key_jwt"),
    # signing_alg, key_id
    ({**PKJ, "signing_alg": "ES256"}, "signing_alg", "ES256 does not fit the key in"),
    ({**PKJ, "private_key_file": "ec.pem", "signing_alg": "RS256"}, "signing_alg", "not fit"),
    ({**PKJ, "private_key_file": "ec.pem", "signing_alg": "PS256"}, "signing_alg", "not fit"),
    ({**PKJ, "signing_alg": "HS256"}, "signing_alg", "is not one of RS256, PS256, ES256"),
    ({**PKJ, "signing_alg": "none"}, "signing_alg", "is not one of"),
    ({"signing_alg": "RS256"}, "signing_alg", "only for private_key_jwt"),
    ({**PKJ, "key_id": ""}, "key_id", "must not be empty"),
    ({**PKJ, "key_id": 7}, "key_id", "must be a string"),
    ({"auth_method": "client_secret_jwt", "key_id": "k1"}, "key_id", "only for private_key"),
    # assertion_audience
    ({**PKJ, "assertion_audience": "issuer"}, "assertion_audience", "needs the issuer key"),
    ({**PKJ, "assertion_audience": "client"}, "assertion_audience", "is not one of"),
    ({"assertion_audience": "token_endpoint"}, "assertion_audience", "only for JWT assert"),
    ({**MTLS, "assertion_audience": "issuer"}, "assertion_audience", "only for JWT assert"),
    # client certificate
    ({**MTLS, "client_cert_file": None}, "client_cert_file", "missing"),
    ({**MTLS, "client_key_file": None}, "client_key_file", "missing"),
    ({**MTLS, "client_cert_file": "nope.pem"}, "client_cert_file", "cannot read"),
    ({**MTLS, "client_key_file": "."}, "client_key_file", "cannot read"),
    ({"client_cert_file": "cert.pem"}, "client_cert_file", "only for tls_client_auth"),
    ({"certificate_bound": True}, "certificate_bound", "needs auth_method tls_client_auth"),
    ({**PKJ, "certificate_bound": True}, "certificate_bound", "self_signed_tls_client_auth"),
    ({**MTLS, "certificate_bound": "yes"}, "certificate_bound", "must be"),
    ({**PKJ, "client_key_file": "key.pem"}, "client_key_file", "only for tls_client_auth"),
]


@pytest.mark.parametrize(("overrides", "key", "words"), BAD)
def test_bad_auth_settings(tmp_path: Path, overrides: dict[str, Any], key: str, words: str) -> None:
    message = refused(tmp_path, backend(**overrides))
    assert f"backend 'api': key '{key}'" in message
    assert words in message
    assert "BEGIN" not in message  # no key material
    assert "PRIVATE" not in message


def test_file_errors_name_the_resolved_path(tmp_path: Path) -> None:
    message = refused(tmp_path, backend(**{**PKJ, "private_key_file": "keys/nope.pem"}))
    assert str(tmp_path / "keys" / "nope.pem") in message


def test_client_cert_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, backend(**{**MTLS, "client_cert_file": "text.txt"}))
    assert "client_cert_file" in message


def test_key_file_with_non_ascii_bag_attributes(tmp_path: Path, key_material) -> None:
    text = "Bag Attributes\n    friendlyName: clé\n".encode() + key_material["ec.pem"]
    (tmp_path / "bag.pem").write_bytes(text)
    assert only(tmp_path, **{**PKJ, "private_key_file": "bag.pem"}).signing_key.algorithm == "ES256"
