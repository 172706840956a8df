"""What a backend nobody configured says of itself and of its authorization server (RFC 9728,
RFC 8414): learned by client.resource_metadata, made a `[[backend]]` table by config.suggestion."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LearnedBackend:
    """What a backend and its authorization server say: enough for a `[[backend]]` table."""

    resource: str  # the protected resource's identifier (RFC 9728 §2), checked against the URL
    issuer: str  # its first authorization server, whose metadata names the token endpoint
    scopes: tuple[str, ...]  # the resource's scopes_supported
    metadata_url: str
