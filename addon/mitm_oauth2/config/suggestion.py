"""A ready `[[backend]]` table for a backend learned from its metadata (RFC 9728): what a person
pastes into the configuration, with the client's id and secret left to the environment."""

from __future__ import annotations

import json
import re

from ..model.learned import LearnedBackend
from ..model.net import printable

_NOT_NAME = re.compile(r"[^A-Za-z0-9]+")


def backend_name(host: str) -> str:
    """`mcp.example.com:8443` -> `mcp-example-com-8443`: a valid backend name (config.backend)."""
    return _NOT_NAME.sub("-", host).strip("-")[:64] or "learned"


def suggested_table(host: str, learned: LearnedBackend, ca_bundle: str | None = None) -> str:
    """The table as TOML. `ca_bundle`: the CA the authorization server's metadata was verified
    with, when not the system's; its token endpoint is then trusted the same way. Strings are
    written by json.dumps: a JSON string with ASCII escapes is a TOML basic string too (no TOML
    writer needed for a few keys)."""
    name = backend_name(host)
    env = name.upper().replace("-", "_")
    lines = [
        f"[[backend]]  # learned from {printable(learned.metadata_url, 300)}",
        f"name = {json.dumps(name)}",
        f"hosts = [{json.dumps(host)}]",
        f"issuer = {json.dumps(learned.issuer)}",
        f"resource = {json.dumps(learned.resource)}",
    ]
    if learned.scopes:
        lines.append(f"scope = {json.dumps(' '.join(learned.scopes))}")
    if ca_bundle:
        lines.append(f"token_ca_bundle = {json.dumps(ca_bundle)}")
    lines += [
        f"client_id_env = {json.dumps(env + '_CLIENT_ID')}",
        f"client_secret_env = {json.dumps(env + '_CLIENT_SECRET')}",
    ]
    return "\n".join(lines) + "\n"
