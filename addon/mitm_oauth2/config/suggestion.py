"""A ready `[[backend]]` table for a backend learned from its metadata (RFC 9728): what a person
pastes into the configuration, with the client's id and secret left to the environment."""

from __future__ import annotations

import json
import re

from ..model.learned import LearnedBackend
from ..model.net import printable

_NOT_NAME = re.compile(r"[^A-Za-z0-9]+")


def _string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's too, for ASCII text (the values here are
    made printable ASCII when learned, so no escape JSON writes is one TOML lacks)."""
    return json.dumps(printable(value, 2000))


def backend_name(host: str) -> str:
    """`mcp.example.com:8443` -> `mcp-example-com-8443`: a valid backend name (config.backend)."""
    return _NOT_NAME.sub("-", host).strip("-")[:64] or "learned"


def suggested_table(host: str, learned: LearnedBackend, ca_bundle: str | None = None) -> str:
    """The table as TOML. `ca_bundle`: the CA the authorization server's metadata was verified
    with, when not the system's; its token endpoint is then trusted the same way. Strings are
    written by `_string` (no TOML writer needed for a few keys)."""
    name = backend_name(host)
    env = name.upper().replace("-", "_")
    lines = [
        f"# Learned from {printable(learned.metadata_url, 300)}. The issuer is the one that the",
        "# backend's metadata names: check it is the authorization server you expect before",
        "# you register a client there and give this proxy its secret.",
        "[[backend]]",
        f"name = {_string(name)}",
        f"hosts = [{_string(host)}]",
        f"issuer = {_string(learned.issuer)}",
        f"resource = {_string(learned.resource)}",
    ]
    if learned.scopes:
        lines.append(f"scope = {_string(' '.join(learned.scopes))}")
    if ca_bundle:
        lines.append(f"token_ca_bundle = {_string(ca_bundle)}")
    lines += [
        f"client_id_env = {_string(env + '_CLIENT_ID')}",
        f"client_secret_env = {_string(env + '_CLIENT_SECRET')}",
    ]
    return "\n".join(lines) + "\n"
