"""Routing by path: `path_prefix` per backend on one host, the longest matching prefix, dot
segments removed and the query ignored; exact hosts before wildcards."""

from __future__ import annotations

import pytest

from mitm_oauth2.config.hosts import HostRouter
from mitm_oauth2.config.hosts import parse_host_pattern
from mitm_oauth2.config.hosts import prefix_matches
from mitm_oauth2.config.hosts import request_path


def router(*entries: tuple[str, str, str]) -> HostRouter[str]:
    """Entries of (host pattern, path prefix, name)."""
    return HostRouter((parse_host_pattern(host), prefix, name) for host, prefix, name in entries)


def route(r: HostRouter[str], path: str, host: str = "api.test", port: int = 443) -> str | None:
    return r.match(host, port, "https", path)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", "/"),
        ("", "/"),
        ("/api", "/api"),
        ("/api/", "/api/"),
        ("/api?next=/admin", "/api"),
        ("/api#frag", "/api"),
        ("?x=1", "/"),
        ("/api/../admin", "/admin"),
        ("/api/./v1", "/api/v1"),
        ("/api/v1/..", "/api/"),
        ("/api/v1/.", "/api/v1/"),
        ("/..", "/"),
        ("/../../admin", "/admin"),
        ("/a/b/../../c/./d", "/c/d"),
        ("/api/..x/y", "/api/..x/y"),
        ("/api/%2e%2e/admin", "/admin"),  # %2e is a dot (RFC 3986 §6.2.2.2)
        ("/api/.%2E/admin", "/admin"),
    ],
)
def test_request_path(target: str, expected: str) -> None:
    assert request_path(target) == expected


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("/", "/", True),
        ("/", "/anything/at/all", True),
        ("/api", "/api", True),
        ("/api", "/api/", True),
        ("/api", "/api/v1", True),
        ("/api", "/apix", False),
        ("/api", "/ap", False),
        ("/api", "/", False),
        ("/api", "/API", False),
        ("/api/", "/api/v1", True),
        ("/api/", "/api", False),
        ("/api/v1", "/api/v1/users", True),
        ("/api/v1", "/api/v10", False),
    ],
)
def test_prefix_matches(prefix: str, path: str, expected: bool) -> None:
    assert prefix_matches(prefix, path) is expected


@pytest.mark.parametrize("order", [1, -1], ids=["short first", "long first"])
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/users", "v1"),
        ("/api/v1", "v1"),
        ("/api/v2", "api"),
        ("/api", "api"),
        ("/apix", "root"),
        ("/api/v1x", "api"),
        ("/", "root"),
        ("/api/v1?x=/other", "v1"),
        ("/other?next=/api/v1", "root"),
        ("/api/../admin", "admin"),
        ("/api/v1/../../admin/x", "admin"),
        ("/admin/../api/v1/a", "v1"),
        ("/admin/./users", "admin"),
    ],
)
def test_longest_prefix_wins(order: int, path: str, expected: str) -> None:
    entries = [
        ("api.test", "/", "root"),
        ("api.test", "/api", "api"),
        ("api.test", "/admin", "admin"),
        ("api.test", "/api/v1", "v1"),
    ]
    assert route(router(*entries[::order]), path) == expected


def test_no_prefix_matches_means_no_backend() -> None:
    r = router(("api.test", "/api", "api"))
    assert route(r, "/api/x") == "api"
    assert route(r, "/apix") is None
    assert route(r, "/") is None
    assert route(r, "/api/../admin") is None


def test_prefix_with_trailing_slash_needs_the_slash() -> None:
    r = router(("api.test", "/api/", "api"), ("api.test", "/", "root"))
    assert route(r, "/api/x") == "api"
    assert route(r, "/api") == "root"


def test_exact_host_beats_wildcard() -> None:
    r = router(("*.test", "/", "wild"), ("api.test", "/", "exact"))
    assert route(r, "/x") == "exact"
    assert route(r, "/x", host="other.test") == "wild"


def test_exact_host_falls_through_to_wildcard_when_no_prefix_matches() -> None:
    r = router(("*.test", "/", "wild"), ("api.test", "/admin", "admin"))
    assert route(r, "/admin/users") == "admin"
    assert route(r, "/public") == "wild"
    assert route(r, "/admin/../public") == "wild"


def test_exact_host_with_nothing_underneath() -> None:
    r = router(("api.test", "/admin", "admin"))
    assert route(r, "/public") is None
    assert route(r, "/admin", host="other.test") is None


def test_longer_wildcard_falls_through_to_shorter() -> None:
    r = router(("*.test", "/", "short"), ("*.svc.test", "/v1", "long"))
    assert route(r, "/v1/x", host="a.svc.test") == "long"
    assert route(r, "/v2", host="a.svc.test") == "short"


def test_prefixes_per_port() -> None:
    r = router(("api.test:8443", "/v1", "alt"), ("api.test", "/v1", "default"))
    assert route(r, "/v1", port=8443) == "alt"
    assert route(r, "/v1", port=443) == "default"
    assert route(r, "/v2", port=8443) is None


def test_same_prefix_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="path prefix /api is listed twice"):
        router(("api.test", "/api", "a"), ("api.test", "/api", "b"))
    router(("api.test", "/api", "a"), ("api.test", "/api/", "b"))  # different prefixes


def test_longest_prefix_wins_across_explicit_and_default_port() -> None:
    r = router(("api.test:443", "/", "explicit"), ("api.test", "/api", "default"))
    assert route(r, "/api/x") == "default"


NEAR = router(
    ("localhost", "/", "web"),
    ("api.test", "/v1", "orders"),
    ("api.test", "/v2", "orders2"),
    ("billing.test:8443", "/", "billing"),
    ("*.svc.test", "/", "mesh"),
)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            ("localhost", 47002, "http", "/x"),
            "http://localhost:47002 gets no token: backend 'web' lists localhost, which means"
            " port 443 (https) and 80 (http); add 'localhost:47002' to its hosts if this is the"
            " same API",
        ),
        (
            ("LOCALHOST", 443, "http", "/"),
            "http://localhost:443 gets no token: backend 'web' lists localhost, which means https"
            " on 443 and http on 80; list it as 'localhost:443' for http on port 443",
        ),
        (
            ("api.test", 443, "https", "/admin/../v3/x?token=abc"),
            "https://api.test:443/v3/x gets no token: backend 'orders' lists api.test for"
            " path_prefix '/v1', '/v2' only; other paths there are passed on as they are",
        ),
        (
            ("billing.test", 443, "https", "/"),
            "https://billing.test:443 gets no token: backend 'billing' lists billing.test:8443,"
            " which means port 8443; add 'billing.test:443' to its hosts if this is the same API",
        ),
        (
            ("a.b.svc.test", 8080, "http", "/"),
            "http://a.b.svc.test:8080 gets no token: backend 'mesh' lists *.svc.test, which"
            " means port 443 (https) and 80 (http); add '*.svc.test:8080' to its hosts if this"
            " is the same API",
        ),
    ],
    ids=["other-port", "other-scheme", "outside-path-prefix", "port-entry", "wildcard"],
)
def test_near_miss_says_which_backend_and_what_to_change(
    request_: tuple[str, int, str, str], expected: str
) -> None:
    assert NEAR.match(*request_) is None
    miss = NEAR.near_miss(*request_)
    assert miss is not None
    assert miss.describe(miss.target, *request_) == expected


@pytest.mark.parametrize(
    "request_",
    [
        ("other.test", 443, "https", "/"),
        ("svc.test", 443, "https", "/"),
        ("bad host", 80, "http", "/"),
    ],
)
def test_no_near_miss_for_hosts_no_backend_names(request_: tuple[str, int, str, str]) -> None:
    assert NEAR.near_miss(*request_) is None


def test_answers_are_remembered_per_host_only_where_the_path_did_not_decide() -> None:
    """match remembers the answer for a whole host; a host whose prefixes or whose wildcard
    fallback depend on the path is decided anew for each request."""
    r = router(
        ("api.test", "/orders", "orders"),
        ("*.test", "/", "fallback"),
        ("whole.test", "/", "whole"),
    )
    for _ in range(2):  # the second time from what the first remembered, where it did
        assert route(r, "/orders/7") == "orders"
        assert route(r, "/stock") == "fallback"  # api.test's own prefix misses: the wildcard
        assert route(r, "/orders/../stock") == "fallback"
        assert route(r, "/x", host="whole.test") == "whole"
        assert route(r, "/y", host="whole.test", port=8443) is None
        assert route(r, "/z", host="other.example") is None
