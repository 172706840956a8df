"""Stored token bytes: plain JSON by default, AES-GCM sealed and bound to the cache key with a
store key; anything else reads as missing."""

from __future__ import annotations

import pytest

from mitm_oauth2.model.errors import UnreadableEntry
from mitm_oauth2.model.token import Token
from mitm_oauth2.store.codec import TokenCodec

TOKEN = Token("tok-secret-value", "Bearer", issued_at=1_700_000_000.0, lifetime=60.0, scope="r")
KEY = "operator-store-key-1234"


def test_plain_round_trip_and_old_text_entries() -> None:
    codec = TokenCodec()
    data = codec.encode(TOKEN, "k")
    assert codec.decode(data, "k") == TOKEN
    assert codec.decode(data.decode(), "k") == TOKEN  # entries written as text before
    assert codec.hmac_key is None


def test_sealed_round_trip_hides_the_token() -> None:
    codec = TokenCodec(KEY)
    data = codec.encode(TOKEN, "k")
    assert b"tok-secret-value" not in data
    assert TokenCodec(KEY).decode(data, "k") == TOKEN
    assert codec.encode(TOKEN, "k") != data  # a fresh nonce each time


@pytest.mark.parametrize(
    ("reader", "key"),
    [
        (TokenCodec("another-store-key-000"), "k"),  # another key
        (TokenCodec(KEY), "other-cache-key"),  # moved under another cache key
        (TokenCodec(), "k"),  # no key set
    ],
    ids=["other key", "moved", "no key"],
)
def test_sealed_entries_open_only_with_their_key_and_place(reader: TokenCodec, key: str) -> None:
    with pytest.raises(UnreadableEntry):
        reader.decode(TokenCodec(KEY).encode(TOKEN, "k"), key)


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"[]", b'{"access_token": "x"}', b"\xff\xfe", b""],
    ids=["truncated", "not an object", "fields missing", "not utf-8", "empty"],
)
def test_corrupt_entries_are_unreadable(data: bytes) -> None:
    with pytest.raises(UnreadableEntry):
        TokenCodec().decode(data, "k")


def test_a_plain_entry_is_refused_when_tokens_must_be_sealed() -> None:
    """Whoever can write to the store cannot plant a token the proxies would send."""
    with pytest.raises(UnreadableEntry):
        TokenCodec(KEY).decode(TokenCodec().encode(TOKEN, "k"), "k")


def test_the_store_key_gives_every_proxy_the_same_cache_key_hmac() -> None:
    assert TokenCodec(KEY).hmac_key == TokenCodec(KEY).hmac_key
    assert TokenCodec(KEY).hmac_key != TokenCodec(KEY + "x").hmac_key
