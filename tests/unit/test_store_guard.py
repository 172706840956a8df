"""The guard around a store: a failing or hanging store never fails a call, one warning when
it starts failing, memory meanwhile, and back to the store once it answers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mitm_oauth2.model.token import Token
from mitm_oauth2.store import guard as guard_module
from mitm_oauth2.store.guard import GuardedStore
from mitm_oauth2.store.memory import MemoryTokenStore
from tests.unit.broker_fakes import FakeClock
from tests.unit.broker_fakes import MemoryStore

pytestmark = pytest.mark.anyio

TOKEN = Token("tok-g", "Bearer", issued_at=1_700_000_000.0, lifetime=60.0)


class FlakyStore(MemoryStore):
    """A MemoryStore that raises, or hangs, while told to."""

    def __init__(self) -> None:
        super().__init__()
        self.error: Exception | None = None
        self.hang = False
        self.closed = False

    async def _check(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error

    async def load(self, grant):
        await self._check()
        return await super().load(grant)

    async def save(self, grant, token, ttl):
        await self._check()
        await super().save(grant, token, ttl)

    async def try_lock(self, grant, owner, lease):
        await self._check()
        return True

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def setup(make_grant):
    clock, raw = FakeClock(), FlakyStore()
    opened: list[FlakyStore] = []

    async def opener() -> FlakyStore:
        opened.append(raw)
        return raw

    guard = GuardedStore(opener, "token store redis://r:6379/0", 0.05, 2.0, clock)
    return guard, raw, clock, make_grant(), opened


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_healthy_store_is_used(setup) -> None:
    guard, raw, _, grant, _ = setup
    await guard.save(grant, TOKEN, ttl=60)
    assert raw.tokens[grant] == TOKEN
    assert await guard.load(grant) == TOKEN
    assert not guard.failing


async def test_failing_store_falls_back_to_memory_with_one_warning(setup, caplog) -> None:
    guard, raw, _, grant, _ = setup
    raw.error = ConnectionError("Error 111 connecting to r:6379. Connection refused.")
    for _ in range(50):
        await guard.save(grant, TOKEN, ttl=60)
        assert await guard.load(grant) == TOKEN  # from this process's memory
        assert await guard.try_lock(grant, "me", lease=5)
    assert guard.failing
    assert raw.tokens == {}
    (line,) = warnings(caplog)
    assert "token store redis://r:6379/0: cannot write (ConnectionError: Error 111" in line
    assert "keeping tokens in this process" in line


async def test_a_hanging_store_costs_one_timeout_then_memory_answers(setup, caplog) -> None:
    guard, raw, _, grant, _ = setup
    await guard.save(grant, TOKEN, ttl=60)
    raw.hang = True
    assert await guard.load(grant) == TOKEN  # the timeout, then memory
    assert guard.failing
    assert await guard.load(grant) == TOKEN  # memory at once: the store is left alone
    assert "cannot read (TimeoutError)" in warnings(caplog)[0]


async def test_sharing_resumes_when_the_store_answers_again(setup, caplog) -> None:
    guard, raw, clock, grant, opened = setup
    raw.error = ConnectionError("down")
    await guard.load(grant)
    raw.error = None
    await guard.save(grant, TOKEN, ttl=60)
    assert raw.tokens == {}  # not tried again before the retry interval ends
    clock.advance(2.0)
    await guard.save(grant, TOKEN, ttl=60)
    assert raw.tokens[grant] == TOKEN
    assert not guard.failing
    assert warnings(caplog)[-1] == "token store redis://r:6379/0 is back: tokens are shared again"
    assert len(opened) == 2  # opened again after the failure: a reconnect


async def test_a_store_that_cannot_be_opened_is_tried_again_later(make_grant, caplog) -> None:
    clock, raw, attempts = FakeClock(), FlakyStore(), []

    async def opener() -> FlakyStore:
        attempts.append(1)
        if len(attempts) == 1:
            raise PermissionError(13, "Permission denied")
        return raw

    guard = GuardedStore(opener, "token cache /ro", 0.05, 2.0, clock)
    grant = make_grant()
    await guard.save(grant, TOKEN, ttl=60)
    assert await guard.load(grant) == TOKEN
    assert "token cache /ro: cannot write (PermissionError" in warnings(caplog)[0]
    clock.advance(2.0)
    assert await guard.load(grant) is None  # the store opened now, and holds nothing yet
    assert len(attempts) == 2


async def test_memory_expires_tokens_with_their_ttl(setup) -> None:
    guard, raw, clock, grant, _ = setup
    raw.error = ConnectionError("down")
    await guard.save(grant, TOKEN, ttl=60)
    clock.now_mono += 1.9  # still inside the retry interval: memory answers
    assert await guard.load(grant) == TOKEN
    clock.now_mono += 58.2
    raw.error = ConnectionError("still down")
    assert await guard.load(grant) is None


async def test_close_closes_the_opened_store(setup) -> None:
    guard, raw, _, grant, _ = setup
    await guard.load(grant)
    await guard.aclose()
    assert raw.closed


async def test_the_memory_copy_holds_at_most_its_limit_newest_first(make_grant) -> None:
    memory = MemoryTokenStore(FakeClock(), limit=3)
    grants = [make_grant(backend=f"b{n}") for n in range(5)]
    for grant in grants:
        await memory.save(grant, TOKEN, ttl=60)
    await memory.save(grants[2], TOKEN, ttl=60)  # saved again: now the newest
    await memory.save(make_grant(backend="b5"), TOKEN, ttl=60)
    kept = [n for n, grant in enumerate(grants) if await memory.load(grant) is not None]
    assert kept == [2, 4]


class LockingStore(FlakyStore):
    """A FlakyStore whose lock is held until its owner releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.locks: dict[object, str] = {}

    async def try_lock(self, grant, owner, lease):
        await self._check()
        return self.locks.setdefault(grant, owner) == owner

    async def unlock(self, grant, owner):
        await self._check()
        if self.locks.get(grant) == owner:
            del self.locks[grant]


async def test_a_lock_whose_release_failed_is_released_once_the_store_answers(make_grant) -> None:
    # A failover keeps the lock the old primary had replicated: left there, every other
    # process would wait out its lease for a token.
    clock, raw, grant = FakeClock(), LockingStore(), make_grant()

    async def opener() -> LockingStore:
        return raw

    guard = GuardedStore(opener, "token store redis://r:6379/0", 0.05, 2.0, clock)
    assert await guard.try_lock(grant, "me", lease=15)
    raw.error = ConnectionError("the primary is gone")
    await guard.unlock(grant, "me")
    assert raw.locks == {grant: "me"}
    raw.error = None
    await guard.load(grant)
    assert raw.locks == {grant: "me"}  # the store is left alone until the retry interval ends
    clock.advance(2.0)
    await guard.load(grant)
    assert raw.locks == {}
    assert await guard.try_lock(grant, "another", lease=15)  # another process can take it
    await guard.aclose()


async def test_a_store_still_opening_at_start_up_is_not_reported_failing(
    make_grant, caplog
) -> None:
    clock, raw, go_on = FakeClock(), FlakyStore(), asyncio.Event()

    async def opener() -> FlakyStore:
        await go_on.wait()  # a slow start: a TLS handshake on a loaded machine
        return raw

    guard = GuardedStore(opener, "token store rediss://r:6379/0", 0.05, 2.0, clock)
    grant = make_grant()
    await guard.save(grant, TOKEN, ttl=60)
    assert await guard.load(grant) == TOKEN  # from memory while it opens
    assert not guard.failing
    assert warnings(caplog) == []
    go_on.set()
    await asyncio.sleep(0)
    assert await guard.load(grant) is None  # opened: the store answers (it holds nothing yet)
    assert raw.tokens == {}
    await guard.aclose()


async def test_an_opening_that_never_ends_is_reported_once_its_own_wait_is_over(
    make_grant, caplog, monkeypatch
) -> None:
    monkeypatch.setattr(guard_module, "OPEN_TIMEOUT", 0.1)

    async def opener() -> FlakyStore:
        await asyncio.Event().wait()  # a Redis that accepts and never answers
        raise AssertionError("unreachable")

    guard = GuardedStore(opener, "token store redis://r:6379/0", 0.05, 2.0, FakeClock())
    assert await guard.load(make_grant()) is None  # a request's call: not a verdict yet
    assert warnings(caplog) == []
    guard.open_soon()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if guard.failing:
            break
    assert guard.failing
    assert "token store redis://r:6379/0: cannot open (TimeoutError)" in warnings(caplog)[0]
    await guard.aclose()
