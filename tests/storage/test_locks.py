"""Distributed locks (the leader lease): take, refuse, expire, take over, fence old tokens."""

from __future__ import annotations

from tests.storage.factories import START, seconds
from timecrisis.clock import ManualClock
from timecrisis.storage.base import LEADER_LOCK, JobStorage

TTL = seconds(30)


async def test_acquiring_a_free_lock_returns_a_token(storage: JobStorage) -> None:
    token = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)

    assert token
    lock = await storage.get_lock(LEADER_LOCK)
    assert lock is not None
    assert (lock.name, lock.owner) == (LEADER_LOCK, "node-1")
    assert lock.acquired_at == START
    assert lock.expires_at == START + TTL


async def test_a_held_lock_is_refused_to_another_owner(storage: JobStorage) -> None:
    await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)

    assert await storage.acquire_lock(LEADER_LOCK, "node-2", TTL) is None
    lock = await storage.get_lock(LEADER_LOCK)
    assert lock is not None
    assert lock.owner == "node-1"


async def test_a_held_lock_is_refused_even_to_its_owner(storage: JobStorage) -> None:
    await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)

    assert await storage.acquire_lock(LEADER_LOCK, "node-1", TTL) is None


async def test_an_expired_lock_is_taken_over(storage: JobStorage, clock: ManualClock) -> None:
    old = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    clock.advance(TTL)  # expires_at == now: expired

    new = await storage.acquire_lock(LEADER_LOCK, "node-2", TTL)

    assert new is not None
    assert new != old
    lock = await storage.get_lock(LEADER_LOCK)
    assert lock is not None
    assert (lock.owner, lock.acquired_at) == ("node-2", START + TTL)


async def test_a_lock_is_held_until_the_instant_it_expires(
    storage: JobStorage, clock: ManualClock
) -> None:
    await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    clock.advance(TTL - seconds(0.001))

    assert await storage.acquire_lock(LEADER_LOCK, "node-2", TTL) is None


async def test_the_old_token_is_refused_after_a_takeover(
    storage: JobStorage, clock: ManualClock
) -> None:
    old = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    assert old is not None
    clock.advance(TTL + seconds(1))
    new = await storage.acquire_lock(LEADER_LOCK, "node-2", TTL)
    assert new is not None

    assert await storage.renew_lock(LEADER_LOCK, old, TTL) is False
    assert await storage.release_lock(LEADER_LOCK, old) is False
    lock = await storage.get_lock(LEADER_LOCK)
    assert lock is not None
    assert lock.owner == "node-2"
    assert await storage.renew_lock(LEADER_LOCK, new, TTL) is True


async def test_the_same_owner_gets_a_new_token_after_expiry(
    storage: JobStorage, clock: ManualClock
) -> None:
    old = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    assert old is not None
    clock.advance(TTL)

    new = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)

    assert new is not None
    assert new != old
    assert await storage.renew_lock(LEADER_LOCK, old, TTL) is False


async def test_renewing_extends_the_lock_from_now(storage: JobStorage, clock: ManualClock) -> None:
    token = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    assert token is not None
    clock.advance(20)

    assert await storage.renew_lock(LEADER_LOCK, token, seconds(60)) is True

    lock = await storage.get_lock(LEADER_LOCK)
    assert lock is not None
    assert lock.expires_at == START + seconds(80)
    assert lock.acquired_at == START
    clock.advance(59)
    assert await storage.acquire_lock(LEADER_LOCK, "node-2", TTL) is None


async def test_renewing_with_a_wrong_token_fails(storage: JobStorage) -> None:
    await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)

    assert await storage.renew_lock(LEADER_LOCK, "wrong", TTL) is False
    lock = await storage.get_lock(LEADER_LOCK)
    assert lock is not None
    assert lock.expires_at == START + TTL


async def test_renewing_an_expired_lock_fails_even_if_nobody_took_it(
    storage: JobStorage, clock: ManualClock
) -> None:
    token = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    assert token is not None
    clock.advance(TTL)

    assert await storage.renew_lock(LEADER_LOCK, token, TTL) is False
    assert await storage.get_lock(LEADER_LOCK) is None


async def test_renewing_a_lock_nobody_holds_fails(storage: JobStorage) -> None:
    assert await storage.renew_lock(LEADER_LOCK, "any", TTL) is False


async def test_releasing_frees_the_lock_for_anyone(storage: JobStorage) -> None:
    token = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    assert token is not None

    assert await storage.release_lock(LEADER_LOCK, token) is True

    assert await storage.get_lock(LEADER_LOCK) is None
    assert await storage.acquire_lock(LEADER_LOCK, "node-2", TTL) is not None


async def test_releasing_with_a_wrong_token_fails_and_keeps_the_lock(storage: JobStorage) -> None:
    await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)

    assert await storage.release_lock(LEADER_LOCK, "wrong") is False

    lock = await storage.get_lock(LEADER_LOCK)
    assert lock is not None
    assert lock.owner == "node-1"


async def test_releasing_twice_fails_the_second_time(storage: JobStorage) -> None:
    token = await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    assert token is not None

    assert await storage.release_lock(LEADER_LOCK, token) is True
    assert await storage.release_lock(LEADER_LOCK, token) is False


async def test_get_lock_hides_an_expired_lock(storage: JobStorage, clock: ManualClock) -> None:
    await storage.acquire_lock(LEADER_LOCK, "node-1", TTL)
    clock.advance(TTL)

    assert await storage.get_lock(LEADER_LOCK) is None


async def test_get_lock_of_an_unknown_lock_is_none(storage: JobStorage) -> None:
    assert await storage.get_lock("never-taken") is None


async def test_locks_of_different_names_are_independent(storage: JobStorage) -> None:
    first = await storage.acquire_lock("lock-a", "node-1", TTL)
    second = await storage.acquire_lock("lock-b", "node-2", TTL)

    assert first is not None
    assert second is not None
    assert await storage.release_lock("lock-b", first) is False
    assert await storage.release_lock("lock-a", first) is True
    lock_b = await storage.get_lock("lock-b")
    assert lock_b is not None
    assert lock_b.owner == "node-2"
