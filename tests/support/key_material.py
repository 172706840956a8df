"""Key material for the auth-method tests, made fresh in a temporary folder: signing keys for
private_key_jwt (private PEM for the proxy, public PEM for the devservers) and client
certificates for tls_client_auth, issued by the session's test CA (or self-signed, for
self_signed_tls_client_auth), with the backend keys that use one."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.devservers import TlsFiles


def private_pem(key: Any, encryption: Any = None) -> bytes:
    """`key` as an unencrypted (or `encryption`'s) PKCS#8 PEM, as key files hold it."""
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )
    return pem


@dataclass(frozen=True)
class KeyPair:
    private_key: Path  # unencrypted PKCS#8 PEM, as the proxy's private_key_file
    public_key: Path  # SubjectPublicKeyInfo PEM, as the devservers' public_key_file


def make_key_pair(directory: Path, kind: str) -> KeyPair:
    """``kind`` "rsa" (2048 bits) or "ec" (P-256)."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    pair = KeyPair(directory / f"{kind}-private.pem", directory / f"{kind}-public.pem")
    pair.private_key.write_bytes(private_pem(private))
    pair.public_key.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pair


@dataclass(frozen=True)
class ClientCert:
    cert: Path  # leaf certificate (chain) PEM, as client_cert_file
    key: Path  # its private key PEM, as client_key_file


def issue_client_cert(tls: TlsFiles, directory: Path, common_name: str) -> ClientCert:
    """A certificate from the test CA with subject CN ``common_name`` (clientAuth usage)."""
    leaf = tls.ca.issue_cert(common_name=common_name)
    files = ClientCert(directory / f"{common_name}-cert.pem", directory / f"{common_name}-key.pem")
    for i, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(files.cert), append=i > 0)
    leaf.private_key_pem.write_to_path(str(files.key))
    return files


def self_signed_client_cert(directory: Path, common_name: str) -> ClientCert:
    """A self-signed EC P-256 certificate with subject CN ``common_name`` (clientAuth usage)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    files = ClientCert(directory / f"{common_name}-cert.pem", directory / f"{common_name}-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def tls_client_auth(
    tls: TlsFiles, cert: ClientCert, client_id: str = "mtls-client"
) -> dict[str, str]:
    """A backend's keys for tls_client_auth as `client_id` with `cert`, trusting the test CA's
    token server."""
    return {
        "client_id": client_id,
        "auth_method": "tls_client_auth",
        "client_cert_file": str(cert.cert),
        "client_key_file": str(cert.key),
        "token_ca_bundle": str(tls.ca_cert),
    }
