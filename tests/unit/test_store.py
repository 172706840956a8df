"""The token store: cache keys that follow the grant, never the secret, and a private disk cache."""

from __future__ import annotations

import os
import stat
import types
from pathlib import Path

import diskcache
import pytest

from mitm_oauth2.model.credentials import AuthMethod
from mitm_oauth2.model.credentials import Secret
from mitm_oauth2.model.token import Token
from mitm_oauth2.store.base import REMEMBERED_KEYS
from mitm_oauth2.store.base import CacheKeys
from mitm_oauth2.store.base import derive_cache_key
from mitm_oauth2.store.disk import DiskTokenStore
from tests.unit.broker_fakes import check_the_lock
from tests.unit.broker_fakes import key_for
from tests.unit.broker_fakes import with_credentials

SECRET = "p@ss:w+rd/%=é"
TOKEN = Token("tok-1", "Bearer", issued_at=1_700_000_000.0, lifetime=3600.0, scope="read")


@pytest.fixture
def store(tmp_path: Path):
    store = DiskTokenStore.open_sync(tmp_path / "cache")
    yield store
    store.close()


@pytest.mark.parametrize(
    "changes",
    [
        {"token_url": "https://idp.test/oauth/token2"},
        {"client_id": "my client 2"},
        {"client_secret": Secret(SECRET + "x")},
        {"scopes": ("read",)},
        {"scopes": ()},
        {"auth_method": AuthMethod.CLIENT_SECRET_POST},
    ],
    ids=["token_url", "client_id", "secret", "scope", "no scope", "auth_method"],
)
def test_key_changes_with_the_grant(make_grant, changes) -> None:
    grant = make_grant()
    assert key_for(with_credentials(grant, **changes)) != key_for(grant)


def test_key_ignores_scope_order(make_grant) -> None:
    assert key_for(make_grant(scopes=("read", "write"))) == key_for(
        make_grant(scopes=("write", "read"))
    )


def test_key_is_stable_and_names_the_backend(make_grant) -> None:
    key = key_for(make_grant(backend="billing"))
    assert key == key_for(make_grant(backend="billing"))
    assert key.startswith("token/v1/billing/")


def test_key_does_not_carry_the_secret(make_grant) -> None:
    key = key_for(make_grant(secret="hunter2-hunter2"))
    assert "hunter2" not in key
    assert SECRET not in key_for(make_grant())


def test_key_depends_on_the_hmac_key(make_grant) -> None:
    grant = make_grant()
    assert derive_cache_key(b"a" * 32, grant) != derive_cache_key(b"b" * 32, grant)


def test_remembered_keys_are_bounded(make_grant) -> None:
    """Token exchange makes a grant per caller: a flood of them must not grow the memo."""
    cache_key = CacheKeys(b"k" * 32, "p:")
    grants = [make_grant(client_id=f"caller-{n}") for n in range(REMEMBERED_KEYS + 50)]
    keys = [cache_key(grant) for grant in grants]
    assert cache_key.remembered == REMEMBERED_KEYS
    assert keys[0] == "p:" + derive_cache_key(b"k" * 32, grants[0]) == cache_key(grants[0])
    assert len(set(keys)) == len(grants)


def test_two_stores_key_one_grant_differently(tmp_path: Path, make_grant) -> None:
    """The HMAC key is random per store: a key seen in one cache says nothing about the secret."""
    first, second = (
        DiskTokenStore.open_sync(tmp_path / "one"),
        DiskTokenStore.open_sync(tmp_path / "two"),
    )
    try:
        assert first.cache_key(make_grant()) != second.cache_key(make_grant())
    finally:
        first.close()
        second.close()


def test_hmac_key_survives_reopening(tmp_path: Path, make_grant) -> None:
    first = DiskTokenStore.open_sync(tmp_path / "cache")
    key = first.cache_key(make_grant())
    first.close()
    second = DiskTokenStore.open_sync(tmp_path / "cache")
    try:
        assert second.cache_key(make_grant()) == key
    finally:
        second.close()


@pytest.mark.anyio
async def test_round_trip(store: DiskTokenStore, make_grant) -> None:
    assert await store.load(make_grant()) is None
    await store.save(make_grant(), TOKEN, ttl=3600)
    loaded = await store.load(make_grant())
    assert loaded == TOKEN
    assert loaded.access_token == "tok-1"
    assert await store.load(make_grant(secret="other")) is None


@pytest.mark.anyio
async def test_survives_reopening(tmp_path: Path, make_grant) -> None:
    first = DiskTokenStore.open_sync(tmp_path / "cache")
    await first.save(make_grant(), TOKEN, ttl=3600)
    await first.aclose()
    second = DiskTokenStore.open_sync(tmp_path / "cache")
    try:
        assert await second.load(make_grant()) == TOKEN
    finally:
        await second.aclose()


@pytest.mark.anyio
async def test_expired_entries_are_not_returned(
    store: DiskTokenStore, make_grant, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_700_000_000.0]
    fake_time = types.SimpleNamespace(time=lambda: now[0], sleep=lambda seconds: None)
    monkeypatch.setattr(diskcache.core, "time", fake_time)  # diskcache expires on time.time()
    await store.save(make_grant(), TOKEN, ttl=60)
    now[0] += 59
    assert await store.load(make_grant()) == TOKEN
    now[0] += 2
    assert await store.load(make_grant()) is None


@pytest.mark.anyio
async def test_private_files(store: DiskTokenStore, make_grant) -> None:
    await store.save(make_grant(), TOKEN, ttl=3600)
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    files = [Path(root, name) for root, _, names in os.walk(store.directory) for name in names]
    assert files
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    for root, dirs, _ in os.walk(store.directory):
        for name in dirs:
            assert stat.S_IMODE(os.stat(Path(root, name)).st_mode) == 0o700


def test_existing_directory_is_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    DiskTokenStore.open_sync(directory).close()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


@pytest.mark.anyio
async def test_secret_is_never_written(store: DiskTokenStore, make_grant) -> None:
    grant = make_grant(secret="hunter2-unique-secret")
    await store.save(grant, TOKEN, ttl=3600)
    await store.aclose()
    for root, _, names in os.walk(store.directory):
        for name in names:
            assert b"hunter2" not in Path(root, name).read_bytes()


@pytest.mark.anyio
async def test_broken_entry_reads_as_missing(store: DiskTokenStore, make_grant) -> None:
    with diskcache.Cache(str(store.directory)) as other:
        other.set(store.cache_key(make_grant()), "{not json")
    assert await store.load(make_grant()) is None
    await store.save(make_grant(), TOKEN, ttl=3600)
    assert await store.load(make_grant()) == TOKEN


@pytest.mark.anyio
async def test_lock_is_exclusive_and_released_only_by_its_owner(tmp_path: Path, make_grant) -> None:
    store = DiskTokenStore.open_sync(tmp_path / "c")
    other = DiskTokenStore.open_sync(tmp_path / "c")  # another process on the same directory
    await check_the_lock(store, other, make_grant(), lease=60)
    assert await store.try_lock(make_grant(backend="other"), "me", lease=60)  # per grant
