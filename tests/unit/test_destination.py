"""Destinations: the answer for each request's names and target, remembered, is the answer
`refusal` gives; one request's answer never stands for another's."""

from __future__ import annotations

import dataclasses

from mitm_oauth2.config.backend import BackendConfig
from mitm_oauth2.destination import MAX_REMEMBERED
from mitm_oauth2.destination import Destinations
from mitm_oauth2.destination import refusal

TARGET = ("api.example", 443, "https")


def fields(*hosts: str) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"Accept", b"*/*"),
        *((b"Host", host.encode()) for host in hosts),
        (b"User-Agent", b"t"),
    )


def backend(make_grant, **settings: object) -> BackendConfig:
    return BackendConfig(name="api", hosts=(), grant=make_grant(), **settings)  # type: ignore[arg-type]


def test_each_request_gets_its_own_answer(make_grant) -> None:
    places = Destinations()
    api = backend(make_grant)
    assert places.refusal(api, *TARGET, fields("api.example"), "") is None
    refused = places.refusal(api, *TARGET, fields("evil.example"), "")
    assert refused is not None
    assert "evil.example" in refused.cause
    assert places.refusal(api, *TARGET, fields("api.example"), "evil.example") is not None
    two = places.refusal(api, *TARGET, fields("api.example", "api.example"), "")
    assert two is not None  # two Host headers, however alike
    # Asked again, each answer is the same as at first.
    assert places.refusal(api, *TARGET, fields("api.example"), "") is None
    again = places.refusal(api, *TARGET, fields("evil.example"), "")
    assert again == refused


def test_answers_are_those_of_refusal(make_grant) -> None:
    places = Destinations()
    api = backend(make_grant)
    for host, port, scheme, names, authority in [
        ("api.example", 80, "http", ["api.example"], ""),
        ("127.0.0.1", 8080, "http", ["127.0.0.1:8080"], ""),
        ("api.example", 443, "https", [], "api.example"),
        ("api.example", 443, "https", [], "other.example:443"),
    ]:
        expected = refusal(api, host, port, scheme, names, authority)
        asked = fields(*names)
        assert places.refusal(api, host, port, scheme, asked, authority) == expected
        assert places.refusal(api, host, port, scheme, asked, authority) == expected


def test_a_backends_settings_are_part_of_the_answer(make_grant) -> None:
    """The addon makes new Destinations with each configuration; within one, two backends
    with other settings are told apart by name."""
    strict, mesh = (
        backend(make_grant),
        dataclasses.replace(backend(make_grant), name="mesh", allow_plain_http=True),
    )
    places = Destinations()
    plain = ("api.example", 80, "http", fields("api.example"), "")
    assert places.refusal(strict, *plain) is not None
    assert places.refusal(mesh, *plain) is None


def test_bounded_whatever_names_clients_send(make_grant) -> None:
    places = Destinations()
    api = backend(make_grant)
    for n in range(MAX_REMEMBERED + 10):
        places.refusal(api, *TARGET, fields(f"h{n}.example"), "")
    assert len(places._seen) <= MAX_REMEMBERED
    assert places.refusal(api, *TARGET, fields("api.example"), "") is None
