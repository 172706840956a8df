"""Host matching: a request's backend, decided by the host and port the proxy connects to."""

from __future__ import annotations

import pytest
from mitmproxy.http import Headers

from mitm_oauth2.config.hosts import HostPattern
from mitm_oauth2.config.hosts import HostRouter
from mitm_oauth2.config.hosts import names_target
from mitm_oauth2.config.hosts import normalize_host
from mitm_oauth2.config.hosts import parse_host_pattern
from mitm_oauth2.destination import host_headers


def router(*entries: str) -> HostRouter[str]:
    """A router whose targets are the configured entries themselves."""
    return HostRouter((parse_host_pattern(entry), "/", entry) for entry in entries)


def matches(entry: str, host: str, port: int, scheme: str = "https") -> bool:
    return router(entry).match(host, port, scheme) == entry


@pytest.mark.parametrize(
    ("entry", "host", "port", "scheme", "expected"),
    [
        # exact name, port defaulting to the scheme's
        ("api.test", "api.test", 443, "https", True),
        ("api.test", "api.test", 80, "http", True),
        ("api.test", "api.test", 8443, "https", False),
        ("api.test", "api.test", 443, "http", False),
        ("api.test", "api.test", 80, "https", False),
        ("api.test", "other.test", 443, "https", False),
        # explicit port
        ("api.test:8443", "api.test", 8443, "https", True),
        ("api.test:8443", "api.test", 443, "https", False),
        ("api.test:443", "api.test", 443, "https", True),
        ("api.test:8080", "api.test", 8080, "http", True),
        # case and trailing dot, in the request and in the entry
        ("api.test", "API.Test", 443, "https", True),
        ("api.test", "api.test.", 443, "https", True),
        ("API.TEST.", "api.test", 443, "https", True),
        # internationalised names, either spelling on either side
        ("bücher.example", "xn--bcher-kva.example", 443, "https", True),
        ("xn--bcher-kva.example", "bücher.example", 443, "https", True),
        ("BÜCHER.example", "bücher.example", 443, "https", True),
        ("bücher.example", "bucher.example", 443, "https", False),
        # IDNA 2008 (as browsers): straße.example is xn--strae-oqa, not strasse (IDNA 2003)
        ("straße.example", "strasse.example", 443, "https", False),
        ("strasse.example", "straße.example", 443, "https", False),
        ("straße.example", "xn--strae-oqa.example", 443, "https", True),
        # one trailing dot is the DNS root; two are no host name
        ("api.test", "api.test..", 443, "https", False),
        # IP literals
        ("10.1.2.3", "10.1.2.3", 443, "https", True),
        ("10.1.2.3:8443", "10.1.2.3", 8443, "https", True),
        ("10.1.2.3", "10.1.2.4", 443, "https", False),
        ("[::1]:8443", "::1", 8443, "https", True),
        ("[::1]:8443", "[::1]", 8443, "https", True),
        ("[::1]:8443", "0:0:0:0:0:0:0:1", 8443, "https", True),
        ("[::1]:8443", "::1", 443, "https", False),
        ("::1", "::1", 443, "https", True),
        ("[2001:DB8::0001]", "2001:db8::1", 80, "http", True),
        # wildcards: subdomains at any depth, never the domain itself or a look-alike
        ("*.example.com", "a.example.com", 443, "https", True),
        ("*.example.com", "a.b.example.com", 443, "https", True),
        ("*.example.com", "A.Example.COM.", 443, "https", True),
        ("*.example.com", "example.com", 443, "https", False),
        ("*.example.com", "example.com.evil.test", 443, "https", False),
        ("*.example.com", "a.example.com.evil.test", 443, "https", False),
        ("*.example.com", "evilexample.com", 443, "https", False),
        ("*.example.com", "a.evilexample.com", 443, "https", False),
        ("*.example.com", "a.example.com", 8443, "https", False),
        ("*.example.com:8443", "a.example.com", 8443, "https", True),
        ("*.example.com:8443", "a.example.com", 443, "https", False),
        # look-alike suffixes and prefixes of exact entries
        ("api.test", "xapi.test", 443, "https", False),
        ("api.test", "a.api.test", 443, "https", False),
        ("api.test", "api.test.evil", 443, "https", False),
        # garbage from the request never matches and never raises
        ("api.test", "", 443, "https", False),
        ("api.test", "api test", 443, "https", False),
        ("api.test", "api.test/x", 443, "https", False),
    ],
)
def test_match(entry: str, host: str, port: int, scheme: str, expected: bool) -> None:
    assert matches(entry, host, port, scheme) is expected


def test_exact_beats_wildcard() -> None:
    table = router("*.example.com", "api.example.com")
    assert table.match("api.example.com", 443, "https") == "api.example.com"
    assert table.match("web.example.com", 443, "https") == "*.example.com"


def test_longer_wildcard_beats_shorter() -> None:
    table = router("*.example.com", "*.eu.example.com")
    assert table.match("a.eu.example.com", 443, "https") == "*.eu.example.com"
    assert table.match("eu.example.com", 443, "https") == "*.example.com"
    assert table.match("a.us.example.com", 443, "https") == "*.example.com"


def test_explicit_port_beats_default_port() -> None:
    table = router("api.test", "api.test:443")
    assert table.match("api.test", 443, "https") == "api.test:443"
    assert table.match("api.test", 80, "http") == "api.test"


def test_several_backends() -> None:
    table = HostRouter(
        [
            (parse_host_pattern("a.test"), "/", "A"),
            (parse_host_pattern("b.test:8443"), "/", "B"),
            (parse_host_pattern("*.c.test"), "/", "C"),
        ]
    )
    assert table.match("a.test", 443, "https") == "A"
    assert table.match("b.test", 8443, "https") == "B"
    assert table.match("x.c.test", 80, "http") == "C"
    assert table.match("b.test", 443, "https") is None
    assert table.match("c.test", 443, "https") is None


def test_empty_router_matches_nothing() -> None:
    assert HostRouter[str]().match("api.test", 443, "https") is None


def test_same_pattern_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        router("api.test", "API.test.")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("api.test", HostPattern("api.test")),
        ("api.test:8443", HostPattern("api.test", 8443)),
        ("*.Example.com", HostPattern("example.com", None, wildcard=True)),
        ("[::1]:8443", HostPattern("::1", 8443)),
        ("::1", HostPattern("::1")),
        ("bücher.example", HostPattern("xn--bcher-kva.example")),
        (" api.test ", HostPattern("api.test")),
    ],
)
def test_parse_host_pattern(entry: str, expected: HostPattern) -> None:
    assert parse_host_pattern(entry) == expected


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (HostPattern("api.test"), "api.test"),
        (HostPattern("api.test", 8443), "api.test:8443"),
        (HostPattern("example.com", wildcard=True), "*.example.com"),
        (HostPattern("::1", 8443), "[::1]:8443"),
    ],
)
def test_pattern_shows_as_written(pattern: HostPattern, text: str) -> None:
    assert str(pattern) == text


@pytest.mark.parametrize(
    "entry",
    ["api.test/v1", "http://api.test", "api.test:65536", "a.*.test", "*.127.0.0.1", "-bad.test"],
)
def test_parse_host_pattern_refuses(entry: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_host_pattern(entry)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Api.Test.", "api.test"),
        ("[::1]", "::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("münchen.de", "xn--mnchen-3ya.de"),
    ],
)
def test_normalize_host(host: str, expected: str) -> None:
    assert normalize_host(host) == expected


@pytest.mark.parametrize(
    ("authority", "host", "port", "scheme", "names_it"),
    [
        # The authority names the target:
        ("api.test", "api.test", 443, "https", True),
        ("API.Test.", "api.test", 443, "https", True),
        ("api.test:443", "api.test", 443, "https", True),
        ("api.test:8443", "API.TEST", 8443, "http", True),
        ("[::1]:8443", "::1", 8443, "https", True),
        ("[0:0::1]", "::1", 80, "http", True),
        ("bücher.example", "xn--bcher-kva.example", 443, "https", True),
        # ... another server:
        ("evil.test", "api.test", 443, "https", False),
        ("api.test.evil.test", "api.test", 443, "https", False),
        ("api.test", "api.test", 8443, "https", False),
        ("api.test:443", "api.test", 80, "http", False),
        ("api.test:80", "api.test", 443, "https", False),
        ("*.test", "api.test", 443, "https", False),
        ("user@api.test", "api.test", 443, "https", False),
        ("", "api.test", 443, "https", False),
        ("[::2]:8443", "::1", 8443, "https", False),
    ],
)
def test_authority_names_the_target_or_another_server(
    authority: str, host: str, port: int, scheme: str, names_it: bool
) -> None:
    assert names_target(authority, host, port, scheme) is names_it


@pytest.mark.parametrize(
    "fields",
    [
        ((b"Host", b"api.test"), (b"Accept", b"*/*")),
        ((b"host", b"a.test"), (b"HOST", b"b.test:8443")),
        ((b"Accept", b"*/*"),),
        ((b"Host", "bücher.test".encode()), (b"Host", b"\xff.test")),
    ],
)
def test_host_headers_are_read_as_mitmproxy_reads_them(fields) -> None:
    assert host_headers(fields) == Headers(fields).get_all("Host")
