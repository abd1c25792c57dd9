"""LISTEN/NOTIFY wake-ups between nodes: an insert on one store wakes an idle listener of
another; the LISTEN connection comes back after it is terminated; it closes when the last
listener leaves and when the store closes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.postgres.conftest import Admin, StoreFactory, terminate_pid
from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimParams, NewJob
from timecrisis.storage.postgres import PostgresJobStorage

pytestmark = pytest.mark.postgres

GUARD_SECONDS = 10  # hang guards only: a working listener answers in milliseconds


class Signal:
    def __init__(self) -> None:
        self.calls = 0
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self.calls += 1
        self._event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self._event.wait(), GUARD_SECONDS)
        self._event.clear()


async def _subscribed(store: PostgresJobStorage) -> Signal:
    """Subscribe, and consume the wake-up every (re)connect sends, so the next one is news."""
    signal = Signal()
    store.add_wakeup_listener(signal)
    await asyncio.wait_for(store.wait_for_listener(), GUARD_SECONDS)
    await signal.wait()
    return signal


async def _backend_alive(admin: Admin, pid: int) -> bool:
    cur = await admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
    return await cur.fetchone() is not None


async def _until_gone(admin: Admin, pid: int) -> None:
    async with asyncio.timeout(GUARD_SECONDS):
        while await _backend_alive(admin, pid):
            await asyncio.sleep(0.01)


def _job() -> NewJob:
    return NewJob(id=new_id(), type="t", data={})


async def test_an_insert_on_one_node_wakes_an_idle_listener_on_another(
    make_store: StoreFactory,
) -> None:
    producer, worker = make_store(), make_store()
    await producer.init()
    signal = await _subscribed(worker)

    await producer.insert_jobs([_job()])

    await signal.wait()


async def test_a_release_on_one_node_wakes_another(make_store: StoreFactory) -> None:
    producer, worker = make_store(), make_store()
    await producer.insert_jobs([_job()])
    [claimed] = await producer.claim_jobs(
        ClaimParams(worker="a", limit=1, lease_ttl=timedelta(minutes=1), type_limits={"t": None})
    )
    signal = await _subscribed(worker)

    assert await producer.release_jobs([claimed.ref]) == [True]

    await signal.wait()


async def test_the_listener_reconnects_after_its_connection_is_terminated(
    make_store: StoreFactory, admin: Admin
) -> None:
    producer, worker = make_store(), make_store()
    await producer.init()
    signal = await _subscribed(worker)
    pid = worker._listener.backend_pid
    assert pid is not None

    assert await terminate_pid(admin, pid)
    await signal.wait()  # the catch-up wake-up of the new connection
    await asyncio.wait_for(worker.wait_for_listener(), GUARD_SECONDS)
    assert worker._listener.connections == 2
    assert worker._listener.backend_pid not in (None, pid)

    await producer.insert_jobs([_job()])
    await signal.wait()


async def test_the_last_unsubscribe_closes_the_listen_connection(
    make_store: StoreFactory, admin: Admin
) -> None:
    store = make_store()
    signal = Signal()
    unsubscribe = store.add_wakeup_listener(signal)
    await asyncio.wait_for(store.wait_for_listener(), GUARD_SECONDS)
    pid = store._listener.backend_pid
    assert pid is not None

    unsubscribe()

    await _until_gone(admin, pid)
    assert not store._listener.running


async def test_closing_the_store_closes_the_listen_connection(
    make_store: StoreFactory, admin: Admin
) -> None:
    store = make_store()
    store.add_wakeup_listener(Signal())
    await asyncio.wait_for(store.wait_for_listener(), GUARD_SECONDS)
    pid = store._listener.backend_pid
    assert pid is not None

    await store.close()

    assert not store._listener.running
    await _until_gone(admin, pid)  # the server notices the closed socket a moment later


async def test_a_resume_on_one_node_wakes_another(make_store: StoreFactory) -> None:
    """Flow control: `timecrisis resume` on an operator's machine starts the resumed jobs on
    every worker at once (the NOTIFY rides in the statement that lifts the pause)."""
    operator, worker = make_store(), make_store()
    await operator.pause("t")
    signal = await _subscribed(worker)

    assert await operator.resume("t") is True

    await signal.wait()
