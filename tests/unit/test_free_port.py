"""mitm_oauth2.testing.free_port: a port no outgoing connection takes before the server does."""

from __future__ import annotations

import socket

import pytest

from mitm_oauth2 import testing
from mitm_oauth2.testing import free_port


def test_ports_are_outside_the_ephemeral_range_and_bindable() -> None:
    low, high = testing._ephemeral_range()
    for _ in range(20):
        port = free_port()
        assert port >= 10000
        assert not low <= port <= high
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [
        ((32768, 60999), range(10000, 32768)),  # Linux's default
        ((1024, 60999), range(61000, 65536)),  # a range that starts low leaves the top
        ((49152, 65535), range(10000, 49152)),  # as macOS's
        ((1024, 65000), None),  # too few ports left: the kernel's pick
    ],
)
def test_the_longer_side_of_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, ephemeral: tuple[int, int], expected: range | None
) -> None:
    monkeypatch.setattr(testing, "_ephemeral_range", lambda: ephemeral)
    assert testing._outside_ephemeral() == expected


def test_no_port_is_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "_outside_ephemeral", lambda: range(10000, 10060))
    monkeypatch.setattr(testing, "_handed_out", set())
    ports = [free_port() for _ in range(40)]
    assert len(set(ports)) == 40
    assert all(10000 <= port < 10060 for port in ports)


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "_outside_ephemeral", lambda: range(10000, 10002))
    monkeypatch.setattr(testing, "_handed_out", set())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 10000))
        taken.listen()
        assert free_port() == 10001
        with pytest.raises(OSError, match=r"no free TCP port on 127\.0\.0\.1 in 10000-10001"):
            free_port()


def test_the_kernels_pick_when_no_range_has_room(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "_outside_ephemeral", lambda: None)
    monkeypatch.setattr(testing, "_handed_out", set())
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    assert all(port > 0 for port in ports)


def test_ipv6_loopback() -> None:
    port = free_port("::1")
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", port))
