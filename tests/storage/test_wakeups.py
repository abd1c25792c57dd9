"""Wake-up listeners: called on the subscriber's loop when work may have become claimable."""

from __future__ import annotations

import asyncio

import pytest

from tests.storage.factories import claim_one, fail, insert_one
from timecrisis.storage.base import JobStorage

# Only a guard against a hang: a correct store calls the listener on the next loop iterations.
GUARD_SECONDS = 10


class Signal:
    """A wake-up listener that records its calls and the loop it ran on."""

    def __init__(self) -> None:
        self.calls = 0
        self.loops: list[asyncio.AbstractEventLoop] = []
        self._called = asyncio.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.loops.append(asyncio.get_running_loop())
        self._called.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self._called.wait(), GUARD_SECONDS)
        self._called.clear()


async def _yield_to_the_loop() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_listener_is_called_after_an_insert(storage: JobStorage) -> None:
    signal = Signal()
    unsubscribe = storage.add_wakeup_listener(signal)
    try:
        await insert_one(storage)
        await signal.wait()
    finally:
        unsubscribe()

    assert signal.calls >= 1


async def test_a_listener_runs_on_the_loop_that_subscribed(storage: JobStorage) -> None:
    signal = Signal()
    unsubscribe = storage.add_wakeup_listener(signal)
    try:
        await insert_one(storage)
        await signal.wait()
    finally:
        unsubscribe()

    assert set(signal.loops) == {asyncio.get_running_loop()}


async def test_a_listener_is_not_called_after_it_unsubscribed(storage: JobStorage) -> None:
    gone, sentinel = Signal(), Signal()
    storage.add_wakeup_listener(gone)()  # subscribe, then unsubscribe at once
    unsubscribe = storage.add_wakeup_listener(sentinel)
    try:
        await insert_one(storage)
        await sentinel.wait()
        await _yield_to_the_loop()
    finally:
        unsubscribe()

    assert gone.calls == 0


async def test_unsubscribing_twice_is_harmless(storage: JobStorage) -> None:
    unsubscribe = storage.add_wakeup_listener(Signal())

    unsubscribe()
    unsubscribe()


async def test_every_listener_is_called(storage: JobStorage) -> None:
    signals = [Signal() for _ in range(3)]
    unsubscribes = [storage.add_wakeup_listener(signal) for signal in signals]
    try:
        await insert_one(storage)
        for signal in signals:
            await signal.wait()
    finally:
        for unsubscribe in unsubscribes:
            unsubscribe()


async def test_a_listener_is_called_after_a_release(storage: JobStorage) -> None:
    await insert_one(storage)
    claimed = await claim_one(storage)
    signal = Signal()
    unsubscribe = storage.add_wakeup_listener(signal)
    try:
        assert await storage.release_jobs([claimed.ref]) == [True]
        await signal.wait()
    finally:
        unsubscribe()


async def test_a_listener_is_called_after_retry_job(storage: JobStorage) -> None:
    job_id = await insert_one(storage)
    await storage.cancel_job(job_id)
    signal = Signal()
    unsubscribe = storage.add_wakeup_listener(signal)
    try:
        assert await storage.retry_job(job_id) is True
        await signal.wait()
    finally:
        unsubscribe()


async def test_a_listener_is_called_after_a_failure_that_will_retry(storage: JobStorage) -> None:
    await insert_one(storage, max_retries=1)
    claimed = await claim_one(storage)
    signal = Signal()
    unsubscribe = storage.add_wakeup_listener(signal)
    try:
        outcome = await fail(storage, claimed)
        assert outcome.will_retry
        await signal.wait()
    finally:
        unsubscribe()


@pytest.mark.parametrize("count", [1, 5])
async def test_listeners_keep_being_called_for_later_inserts(
    storage: JobStorage, count: int
) -> None:
    signal = Signal()
    unsubscribe = storage.add_wakeup_listener(signal)
    try:
        for _ in range(count):
            await insert_one(storage)
            await signal.wait()
    finally:
        unsubscribe()

    assert signal.calls >= count
