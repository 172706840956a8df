"""The clients the dev authorization server knows, and how each may authenticate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CLIENTS: dict[str, str] = {"demo-client": "demo secret with : % + & chars"}
# The password grant's users (RFC 6749 §4.3): name -> password.
DEFAULT_USERS: dict[str, str] = {"demo-user": "demo password: % + &"}
CLIENT_KEYS = frozenset(
    {"secret", "public_key", "public_key_file", "cert_cn", "cert_sha256", "certificate_bound"}
    | {"federated_issuer", "federated_subject", "federated_audience", "federated_key"}
)


@dataclass(frozen=True)
class Client:
    """One registered client; any of its credentials authenticates it.

    secret: client_secret_basic, client_secret_post and client_secret_jwt (HS256).
    public_key: PEM public key (RSA or EC) verifying private_key_jwt assertions.
    cert_cn / cert_sha256: tls_client_auth; a verified client certificate whose SHA-256
    fingerprint of the DER (hex, colons optional) matches when one is given, else whose subject
    CN does. certificate_bound: its tokens are bound to that certificate (RFC 8705 §3), and the
    backend serves them only on connections that present it.
    federated_*: workload identity federation (as Entra ID's federated credentials, Google's
    workload identity pools): a client assertion that a platform issued (`iss`) for one of its
    workloads (`sub`), signed with the platform's key (PEM public key), for `audience` (default:
    the token endpoint or the issuer). Presented until it expires, so its `jti` may repeat.
    """

    secret: str | None = None
    public_key: str | None = None
    cert_cn: str | None = None
    cert_sha256: str | None = None
    certificate_bound: bool = False
    federated_issuer: str | None = None
    federated_subject: str | None = None
    federated_audience: str | None = None
    federated_key: str | None = None

    def cert_matches(self, common_name: str | None, fingerprint: str) -> bool:
        if self.cert_sha256 is not None:
            return self.cert_sha256.replace(":", "").lower() == fingerprint
        return self.cert_cn is not None and self.cert_cn == common_name


def parse_clients(document: object, base_dir: Path | None = None) -> dict[str, Client]:
    """Clients from JSON: ``{"id": "secret"}`` or ``{"id": {"secret": .., "public_key_file":
    .., "cert_cn": .., "cert_sha256": ..}}``. Raises ValueError saying what is wrong."""
    if not isinstance(document, dict):
        raise ValueError("clients must be a JSON object")
    clients: dict[str, Client] = {}
    for client_id, spec in document.items():
        if isinstance(spec, str):
            clients[client_id] = Client(secret=spec)
            continue
        if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
            raise ValueError(f"client {client_id!r}: a secret string or an object of strings")
        unknown = sorted(set(spec) - CLIENT_KEYS)
        if unknown:
            raise ValueError(f"client {client_id!r}: unknown key {unknown[0]!r}")
        public_key = spec.get("public_key")
        if "public_key_file" in spec:
            path = Path(spec["public_key_file"])
            path = path if base_dir is None else base_dir / path
            try:
                public_key = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"client {client_id!r}: cannot read {path}: {e}") from e
        clients[client_id] = Client(
            secret=spec.get("secret"),
            public_key=public_key,
            cert_cn=spec.get("cert_cn"),
            cert_sha256=spec.get("cert_sha256"),
            certificate_bound=spec.get("certificate_bound", "false") == "true",
            federated_issuer=spec.get("federated_issuer"),
            federated_subject=spec.get("federated_subject"),
            federated_audience=spec.get("federated_audience"),
            federated_key=spec.get("federated_key"),
        )
        federation = [
            spec.get(k) for k in ("federated_issuer", "federated_subject", "federated_key")
        ]
        if any(federation) and not all(federation):
            raise ValueError(
                f"client {client_id!r}: federated_issuer, federated_subject and federated_key "
                "go together"
            )
    return clients


def as_clients(clients: Mapping[str, str | Client] | None) -> dict[str, Client]:
    """The in-process form: a secret string stands for Client(secret=...)."""
    given = DEFAULT_CLIENTS if clients is None else clients
    return {
        client_id: spec if isinstance(spec, Client) else Client(secret=spec)
        for client_id, spec in given.items()
    }
