"""The dev servers (``python -m mitm_oauth2.devservers``: an authorization server and a protected
backend on 127.0.0.1) as a child process with helpers for their admin API, the TLS files the
tests serve with, and the TOML and HTTP helpers that speak their protocols. No mocks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Protocol

import httpx
import trustme

from tests.support.procs import Child

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo secret with : % + & chars"  # the devservers' default client


def basic_auth(client_id: str, secret: str) -> str:
    """Authorization header value per RFC 6749 §2.3.1 (form-urlencode each part first)."""
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def token_id(token: str) -> str:
    """What the devservers' backend echoes as ``token_id`` for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):  # an inline table, keys quoted
        items = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    return json.dumps(value)


def toml_backend(**fields: Any) -> str:
    """One ``[[backend]]`` table; strings are quoted as JSON, which TOML basic strings accept,
    and dicts become inline tables."""
    lines = ["[[backend]]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TlsFiles:
    """A test CA (a ``trustme.CA``) and a server certificate for localhost and 127.0.0.1."""

    ca: Any
    ca_cert: Path
    server_cert: Path
    server_key: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


def make_tls_files(directory: Path) -> TlsFiles:
    """A fresh trustme CA and a server certificate for localhost and 127.0.0.1, as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    files = TlsFiles(
        ca=ca,
        ca_cert=directory / "ca-cert.pem",
        server_cert=directory / "server-cert.pem",
        server_key=directory / "server-key.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_cert))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(files.server_cert), append=i > 0)
    server.private_key_pem.write_to_path(str(files.server_key))
    return files


class DevServersProcess:
    """``python -m mitm_oauth2.devservers`` as a child process, plus admin helpers."""

    name = "devservers"

    def backend_toml(self, name: str = "api", **fields: Any) -> str:
        """A ``[[backend]]`` table for this server's backend and its default client; `fields`
        override or add keys, and a None value leaves that key out."""
        table: dict[str, Any] = {
            "name": name,
            "hosts": [self.backend_host],
            "token_url": self.token_url,
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            **fields,
        }
        return toml_backend(**{key: value for key, value in table.items() if value is not None})

    def __init__(
        self,
        *,
        tls: TlsFiles | None = None,
        clients: dict[str, Any] | None = None,
        cwd: Path | None = None,
        timeout: float = 10,
        token_tls: TlsFiles | None = None,
        client_ca: Path | None = None,
        backend_client_ca: Path | None = None,
    ) -> None:
        """``clients`` values: a secret, or an object (see ``--clients`` in devservers --help).
        ``token_tls`` serves the token server over HTTPS; ``client_ca`` also asks its clients
        for certificates from that CA (tls_client_auth); ``backend_client_ca`` has the backend
        (``tls``) ask for them (certificate-bound tokens)."""
        cmd = [sys.executable, "-m", "mitm_oauth2.devservers"]
        if clients is not None:
            cmd += ["--clients", json.dumps(clients)]
        if tls is not None:
            cmd += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
        if token_tls is not None:
            cmd += ["--token-tls-cert", str(token_tls.server_cert)]
            cmd += ["--token-tls-key", str(token_tls.server_key)]
        if client_ca is not None:
            cmd += ["--token-client-ca", str(client_ca)]
        if backend_client_ca is not None:
            cmd += ["--backend-client-ca", str(backend_client_ca)]
        self.tls = tls
        self.token_tls = token_tls
        self.child = Child(
            self.name, cmd, ready=r"^\{.*\}$", timeout=timeout, cwd=cwd, separate_stderr=True
        )
        verify = token_tls.ssl_context() if token_tls else True
        self.admin = httpx.Client(trust_env=False, timeout=10, verify=verify)
        assert self.child.ready_match is not None
        urls = json.loads(self.child.ready_match.group(0))
        self.token_url: str = urls["token_url"]
        self.backend_url: str = urls["backend_url"]
        self.admin_url: str = urls["admin_url"]
        self.issuer: str = urls["issuer"]  # the token server's base URL, as its metadata says
        # "127.0.0.1:PORT", as written in a backend's ``hosts`` list
        self.backend_host = urllib.parse.urlsplit(self.backend_url).netloc

    def _admin(self, action: str, knobs: dict[str, Any] | None = None) -> Any:
        response = self.admin.post(f"{self.admin_url}/{action}", json=knobs or {})
        response.raise_for_status()
        return response.json()

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change token endpoint knobs (expires_in, token_type, delay, status, body, ...)."""
        result: dict[str, Any] = self._admin("config", knobs)
        return result

    def reset(self) -> None:
        self._admin("reset")

    def revoke(self) -> None:
        self._admin("revoke")

    def stats(self) -> dict[str, Any]:
        response = self.admin.get(f"{self.admin_url}/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def token_requests(self) -> int:
        return int(self.stats()["token_requests"])

    def backend_requests(self) -> list[dict[str, Any]]:
        return list(self.stats()["backend_requests"])

    def token_log(self) -> list[dict[str, Any]]:
        """One entry per token request: auth, client_id, params, headers, jwt_alg, ..."""
        return list(self.stats()["token_request_log"])

    def metadata_log(self) -> list[dict[str, Any]]:
        """One ``{"path", "status"}`` entry per discovery metadata request."""
        return list(self.stats()["metadata_requests"])

    def fetch_token(
        self, client_id: str = DEMO_CLIENT_ID, secret: str = DEMO_CLIENT_SECRET, **form: str
    ) -> str:
        """Get a token directly (Basic auth), bypassing any proxy. Counts as a token request."""
        response = self.admin.post(
            self.token_url,
            data={"grant_type": "client_credentials", **form},
            headers={"Authorization": basic_auth(client_id, secret)},
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def sign_in(self, client_id: str = DEMO_CLIENT_ID) -> str:
        """A refresh token of `client_id` for a user, as a person's sign-in would give it."""
        answer = self.admin.post(f"{self.admin_url}/refresh-token", json={"client_id": client_id})
        answer.raise_for_status()
        return str(answer.json()["refresh_token"])

    def backend_client(self, **kwargs: Any) -> httpx.Client:
        """A direct (no proxy) client for the backend, trusting the test CA when TLS is on."""
        verify = self.tls.ssl_context() if self.tls else True
        return httpx.Client(base_url=self.backend_url, trust_env=False, verify=verify, **kwargs)

    def output(self) -> str:
        return self.child.output()

    def stop(self) -> int:
        self.admin.close()
        return self.child.stop()


class DevServersFactory(Protocol):
    def __call__(
        self,
        *,
        tls: bool = False,
        clients: dict[str, Any] | None = None,
        token_tls: bool = False,
        client_ca: bool = False,
    ) -> DevServersProcess: ...
