"""mitm_oauth2.testing.free_port: a port no outgoing connection takes before the server does."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mitm_oauth2 import testing
from mitm_oauth2.testing import free_port


def test_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        port = free_port()
        assert 10000 <= port < start
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_no_port_is_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "_ephemeral_start", lambda: 10060)
    monkeypatch.setattr(testing, "_handed_out", set())
    ports = [free_port() for _ in range(40)]
    assert len(set(ports)) == 40
    assert all(10000 <= port < 10060 for port in ports)


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "_ephemeral_start", lambda: 10002)
    monkeypatch.setattr(testing, "_handed_out", set())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 10000))
        taken.listen()
        assert free_port() == 10001
        with pytest.raises(OSError, match="no free TCP port"):
            free_port()


def test_ipv6_loopback() -> None:
    port = free_port("::1")
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", port))
