"""A DPoP key the proxy makes travels with its token through the store (sealed like it), so the
processes sharing a store share one token and sign its proofs with the key it is bound to; a
key file's key, which every process has, is never written to the store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mitm_oauth2.client.dpop import generate_dpop_key
from mitm_oauth2.client.dpop import load_dpop_key
from mitm_oauth2.model.credentials import DpopKey
from mitm_oauth2.model.token import Token
from mitm_oauth2.store.codec import TokenCodec
from mitm_oauth2.store.disk import DiskTokenStore
from mitm_oauth2.tokens.broker import TokenBroker
from tests.unit.broker_fakes import key_for

STORE_KEY = "operator-store-key-1234"


def token_bound_to(key: DpopKey) -> Token:
    return Token("tok-dpop", "DPoP", issued_at=1_700_000_000.0, lifetime=60.0, dpop_key=key)


def file_key() -> DpopKey:
    """A key as dpop_key_file gives it: the same PEM, loaded, not generated."""
    return load_dpop_key(generate_dpop_key().pem.reveal().encode())


@pytest.mark.parametrize("store_key", [None, STORE_KEY], ids=["plain", "sealed"])
def test_a_generated_key_is_stored_with_its_token(store_key: str | None) -> None:
    key = generate_dpop_key()
    codec = TokenCodec(store_key)
    data = codec.encode(token_bound_to(key), "k")
    read = codec.decode(data, "k").dpop_key
    assert read == key
    assert (b"PRIVATE KEY" in data) is (store_key is None)  # sealed: no key to read at rest


def test_a_key_files_key_is_not_stored() -> None:
    data = TokenCodec().encode(token_bound_to(file_key()), "k")
    assert b"PRIVATE KEY" not in data
    assert TokenCodec().decode(data, "k").dpop_key is None


def test_a_broken_key_record_reads_as_no_token() -> None:
    data = TokenCodec().encode(token_bound_to(generate_dpop_key()), "k")
    broken = data.replace(b'"jwk": {', b'"jwk": ["x"], "was": {')
    assert broken != data
    assert TokenCodec().read(broken, "k") is None


def test_processes_with_keys_of_their_own_look_up_one_token(make_grant) -> None:
    """Each process makes its own key: the cache key says "DPoP, a key made here", not which."""
    first = make_grant(dpop=generate_dpop_key())
    second = make_grant(dpop=generate_dpop_key())
    assert key_for(first) == key_for(second)
    assert key_for(first) != key_for(make_grant())  # not a bearer token's
    assert key_for(make_grant(dpop=file_key())) != key_for(make_grant(dpop=file_key()))
    assert key_for(make_grant(dpop=file_key())) != key_for(first)


@pytest.mark.anyio
async def test_the_second_process_adopts_the_token_and_its_key(
    tmp_path: Path, endpoint, clock, make_grant
) -> None:
    ours, theirs = generate_dpop_key(), generate_dpop_key()
    store = DiskTokenStore.open_sync(tmp_path / "cache", TokenCodec(STORE_KEY))
    try:
        fetched = await TokenBroker(endpoint, store, clock).token(make_grant(dpop=theirs))
        adopted = await TokenBroker(endpoint, store, clock).token(make_grant(dpop=ours))
    finally:
        store.close()
    assert endpoint.calls == 1
    assert fetched.dpop_key == theirs  # bound to the key its token request was signed with
    assert adopted.access_token == fetched.access_token
    assert adopted.dpop_key == theirs  # its proofs are signed with that key, not with ours


@pytest.mark.anyio
async def test_a_stored_token_of_a_key_file_is_bound_to_that_key(
    tmp_path: Path, endpoint, clock, make_grant
) -> None:
    key = file_key()
    grant = make_grant(dpop=key)
    store = DiskTokenStore.open_sync(tmp_path / "cache")
    try:
        await TokenBroker(endpoint, store, clock).token(grant)
        restarted = await TokenBroker(endpoint, store, clock).token(grant)
    finally:
        store.close()
    assert endpoint.calls == 1
    assert restarted.dpop_key == key


def test_a_token_is_the_same_token_whatever_key_it_is_held_with() -> None:
    """A token read back without its key (a key file's) is still the one held: its deadlines
    are kept rather than placed anew."""
    token = token_bound_to(file_key())
    assert dataclasses.replace(token, dpop_key=None) == token
    assert "PRIVATE" not in repr(token)
