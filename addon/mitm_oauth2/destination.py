"""Whether a request may carry its backend's token to where it goes (checked before any token
is asked for): not when its Host header or `:authority` names another server, and not over
plain HTTP beyond loopback unless the backend allows it."""

from __future__ import annotations

from dataclasses import dataclass

from .config.backend import BackendConfig
from .config.hosts import HostPattern
from .config.hosts import misnamed
from .model.net import is_loopback
from .problem import Problem
from .problem import misdirected
from .problem import plain_http


@dataclass(frozen=True)
class Refusal:
    problem: Problem
    cause: str  # for the flow's comment and metadata


@dataclass(frozen=True)
class Destination:
    """Where mitmproxy sends the request, and what the request itself says."""

    host: str
    port: int
    scheme: str
    host_headers: list[str]
    authority: str

    def refusal(self, backend: BackendConfig) -> Refusal | None:
        named = misnamed(self.host_headers, self.authority, self.host, self.port, self.scheme)
        if named is not None:
            problem = misdirected(backend.name, named, self.target)
            return Refusal(problem, f"names {named!r}, goes to {self.target}")
        if self.scheme != "https" and not backend.allow_plain_http and not is_loopback(self.host):
            return Refusal(plain_http(backend.name, self.target), "plain http")
        return None

    @property
    def target(self) -> str:
        """`host:port` for a refusal's message; not built for the requests that pass."""
        return str(HostPattern(self.host, self.port))
