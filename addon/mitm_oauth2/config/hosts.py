"""Which backend a request belongs to, decided by where the proxy connects: host and port."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic
from typing import TypeVar

import idna

from ..model.net import printable

T = TypeVar("T")

DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


# Both run for every request (the target, its Host header): cached, as ipaddress and IDNA parsing
# cost more than the rest of the request's matching. Bounded, so odd Host headers cannot grow it.
@functools.lru_cache(maxsize=4096)
def normalize_host(host: str) -> str:
    """Canonical form for comparison: lower case, no trailing dot, IDNA (punycode), compact IPv6.

    Raises ValueError for anything that is not a host name or IP literal.
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    name = host if host.isascii() else _to_ascii(host)
    name = name.lower().removesuffix(".")  # one trailing dot: the DNS root, the same host
    if not name:
        raise ValueError("empty host name")
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"not a valid host name: {host!r}")
    return name


def _to_ascii(name: str) -> str:
    """IDNA 2008 with UTS #46 non-transitional mapping, as browsers and the `idna` package (used
    by httpx) do. Python's own "idna" codec is IDNA 2003, which maps `straße` to `strasse`:
    another domain, which would then get the token configured for the first."""
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        labels = [
            label if label.isascii() else idna.alabel(label).decode() for label in mapped.split(".")
        ]
    except UnicodeError as e:  # idna.IDNAError is one
        raise ValueError(f"not a valid internationalised host name ({e})") from e
    return ".".join(labels)


@dataclass(frozen=True)
class HostPattern:
    """One entry of a backend's `hosts`: `host`, `host:port`, `*.domain`, `[v6]:port`.

    Without a port, the scheme's default port is meant (443 for https, 80 for http).
    A wildcard matches subdomains at any depth, never the domain itself.
    """

    host: str
    port: int | None = None
    wildcard: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        host = f"*.{host}" if self.wildcard else host
        return host if self.port is None else f"{host}:{self.port}"


@functools.lru_cache(maxsize=4096)
def parse_host_pattern(text: str) -> HostPattern:
    """Parses one `hosts` entry; raises ValueError with a short reason."""
    spec = text.strip()
    if not spec:
        raise ValueError("empty host entry")
    if "/" in spec or "@" in spec or "://" in spec:
        raise ValueError(f"{text!r} is a URL or has a path; give only host or host:port")
    port: int | None = None
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise ValueError(f"{text!r} has an unclosed '['")
        host, rest = spec[: end + 1], spec[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':port' after ']'")
            port = _parse_port(rest[1:], text)
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        port = _parse_port(port_text, text)
    else:
        host = spec  # a name, or a bare IPv6 literal (which cannot carry a port unbracketed)
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if "*" in host:
        raise ValueError(f"{text!r}: a wildcard is only allowed as the whole first label ('*.')")
    normalized = normalize_host(host)
    if wildcard and (":" in normalized or normalized.replace(".", "").isdigit()):
        raise ValueError(f"{text!r}: wildcards apply to domain names, not IP addresses")
    return HostPattern(normalized, port, wildcard)


def names_target(authority: str, host: str, port: int, scheme: str) -> bool:
    """Whether a Host header or `:authority` names the server the proxy connects to: the same
    host (modulo case, trailing dot, IDNA) and port (none given: the scheme's default)."""
    try:
        named = parse_host_pattern(authority)
        target = normalize_host(host)
    except ValueError:
        return False
    named_port = named.port if named.port is not None else DEFAULT_PORTS.get(scheme)
    return not named.wildcard and named.host == target and named_port == port


def misnamed(
    host_headers: list[str], authority: str, host: str, port: int, scheme: str
) -> str | None:
    """The Host header or `:authority` that names another server than the one the proxy
    connects to (the first such, or all Host headers when several are sent), if any."""
    if len(host_headers) > 1:  # RFC 9112 §3.2: a server must refuse these, a front end may not
        return ", ".join(host_headers)
    for named in [*host_headers, authority]:
        if named and not names_target(named, host, port, scheme):
            return named
    return None


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: port must be a number from 1 to 65535")
    return int(text)


def request_path(target: str) -> str:
    """The path of a request target, without query, with dot segments removed (RFC 3986 §5.2.4),
    so `/api/../admin` is matched as the `/admin` the server will serve."""
    path = target.split("?", 1)[0].split("#", 1)[0] or "/"
    if path[0] == "/" and "%" not in path and "/." not in path:
        return path  # nothing to decode or remove: what follows would give it back unchanged
    # %2e is a dot too (RFC 3986 §6.2.2.2): "/a/%2e%2e/b" is "/b" to a normalising server.
    path = re.sub("%2[eE]", ".", path)
    segments: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if segments:
                segments.pop()
        elif segment != ".":
            segments.append(segment)
    trailing = path.endswith(("/.", "/..")) and segments
    return "/" + "/".join(segments) + ("/" if trailing else "")


def prefix_matches(prefix: str, path: str) -> bool:
    """`/api` covers `/api` and `/api/...`, not `/apix`; `/` covers everything."""
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


_Routes = list[tuple[str, T]]  # (path prefix, target), longest prefix first
_UNSEEN = object()
MAX_WHOLE_HOSTS = 4096


@dataclass(frozen=True)
class NearMiss(Generic[T]):
    """A request that got no target although an entry names its host: why it missed."""

    target: T
    pattern: HostPattern
    why: str  # "port", "scheme" or "path"
    prefixes: tuple[str, ...] = ()  # for "path": the prefixes its host and port have

    def describe(self, target_name: str, host: str, port: int, scheme: str, path: str) -> str:
        """One log line: what was asked, which backend nearly matched, what to change."""
        where = f"{scheme}://{HostPattern(host.lower(), port)}"
        listed = f"backend '{target_name}' lists {self.pattern}"
        entry = HostPattern(self.pattern.host, port, self.pattern.wildcard)
        if self.why == "port":
            ports = "443 (https) and 80 (http)" if self.pattern.port is None else self.pattern.port
            return (
                f"{where} gets no token: {listed}, which means port {ports}; add '{entry}' to"
                " its hosts if this is the same API"
            )
        if self.why == "scheme":
            return (
                f"{where} gets no token: {listed}, which means https on 443 and http on 80;"
                f" list it as '{entry}' for {scheme} on port {port}"
            )
        prefixes = ", ".join(f"'{prefix}'" for prefix in self.prefixes)
        return (
            f"{where}{printable(request_path(path), 80)} gets no token: {listed} for"
            f" path_prefix {prefixes} only; other paths there are passed on as they are"
        )


class HostRouter(Generic[T]):
    """Maps (host, port, scheme, path) to a target.

    Exact host entries win over wildcards, longer wildcard domains over shorter, and within a
    host the longest matching path prefix. Lookups are dictionary probes, one per label at
    most, however many backends are configured.
    """

    def __init__(self, entries: Iterable[tuple[HostPattern, str, T]] = ()) -> None:
        self._exact: dict[tuple[str, int | None], _Routes[T]] = {}
        self._wildcard: dict[tuple[str, int | None], _Routes[T]] = {}
        # (host, wildcard) -> its entries whatever their port: what a near miss is looked up in
        self._names: dict[tuple[str, bool], list[tuple[HostPattern, str, T]]] = {}
        # (host, port, scheme) -> the answer `match` gave without looking at the path: asked
        # for every request, and most backends take their whole host.
        self._whole_hosts: dict[tuple[str, int, str], T | None] = {}
        for pattern, prefix, target in entries:
            self._names.setdefault((pattern.host, pattern.wildcard), []).append(
                (pattern, prefix, target)
            )
            table = self._wildcard if pattern.wildcard else self._exact
            routes = table.setdefault((pattern.host, pattern.port), [])
            if any(existing == prefix for existing, _ in routes):
                raise ValueError(f"host {pattern} with path prefix {prefix} is listed twice")
            routes.append((prefix, target))
            routes.sort(key=lambda route: len(route[0]), reverse=True)

    def match(self, host: str, port: int, scheme: str, path: str = "/") -> T | None:
        key = (host, port, scheme)
        whole = self._whole_hosts.get(key, _UNSEEN)
        if whole is not _UNSEEN:
            return whole  # type: ignore[return-value]
        found, by_path = self._match(host, port, scheme, path)
        if not by_path:  # the answer for every path of this host, port and scheme
            if len(self._whole_hosts) >= MAX_WHOLE_HOSTS:  # bounded, whatever hosts clients name
                self._whole_hosts.clear()
            self._whole_hosts[key] = found
        return found

    def _match(self, host: str, port: int, scheme: str, target: str) -> tuple[T | None, bool]:
        """The target, and whether the request's path decided it."""
        try:
            name = normalize_host(host)
        except ValueError:
            return None, False
        default = DEFAULT_PORTS.get(scheme) == port
        found, by_path = self._lookup(self._exact, name, port, default, target)
        if found is not None or not self._wildcard:
            return found, by_path
        labels = name.split(".")
        for i in range(1, len(labels)):
            found, decided = self._lookup(
                self._wildcard, ".".join(labels[i:]), port, default, target
            )
            by_path = by_path or decided
            if found is not None:
                return found, by_path
        return None, by_path

    def near_miss(self, host: str, port: int, scheme: str, path: str = "/") -> NearMiss[T] | None:
        """For a request `match` found no target for: an entry for its host name that another
        port, scheme or path prefix kept from matching (exact names before wildcards)."""
        try:
            name = normalize_host(host)
        except ValueError:
            return None
        candidates = self._names.get((name, False))
        if not candidates and self._wildcard:
            labels = name.split(".")
            for i in range(1, len(labels)):
                if candidates := self._names.get((".".join(labels[i:]), True)):
                    break
        if not candidates:
            return None
        default = DEFAULT_PORTS.get(scheme) == port
        fits = [e for e in candidates if e[0].port == port or (e[0].port is None and default)]
        if fits:  # host and port are right: only the path is outside every prefix
            pattern, _, target = fits[0]
            return NearMiss(target, pattern, "path", tuple(prefix for _, prefix, _ in fits))
        for pattern, _, target in candidates:
            if pattern.port is None and port in DEFAULT_PORTS.values():
                return NearMiss(target, pattern, "scheme")
        return NearMiss(candidates[0][2], candidates[0][0], "port")

    @staticmethod
    def _lookup(
        table: dict[tuple[str, int | None], _Routes[T]],
        name: str,
        port: int,
        default: bool,
        target: str,
    ) -> tuple[T | None, bool]:
        routes = table.get((name, port))
        if default:  # `host` means the default port: its routes compete on prefix length
            also = table.get((name, None))
            routes = also if routes is None else routes + also if also else routes
        if not routes:
            return None, False
        if len(routes) == 1 and routes[0][0] == "/":  # the whole host: no path to look at
            return routes[0][1], False
        path = request_path(target)
        best: tuple[int, T] | None = None
        for prefix, found in routes:
            if prefix_matches(prefix, path) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), found)
        return (None if best is None else best[1]), True
