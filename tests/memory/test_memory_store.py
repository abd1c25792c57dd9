"""What only the in-memory store promises, beyond the shared suite: it is safe to share
between threads that each run their own event loop, it wakes listeners on foreign loops, and
its indexes stay right through clock changes and mass deletions."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from tests.storage.factories import (
    REPORT,
    START,
    claim,
    claimed_ids,
    complete,
    get,
    insert,
    insert_one,
    new_job,
    seconds,
)
from timecrisis.clock import ManualClock
from timecrisis.models import JobStatus
from timecrisis.storage.base import JobQuery, JobStorage, PurgeParams
from timecrisis.storage.memory import InMemoryJobStorage

T = TypeVar("T")
THREADS = 4


@pytest.fixture
def memory(clock: ManualClock) -> InMemoryJobStorage:
    return InMemoryJobStorage(clock=clock)


def _in_threads(count: int, work: Callable[[int], Coroutine[Any, Any, T]]) -> list[T]:
    """Run `work(i)` on `count` threads at once, each in its own event loop."""
    start = threading.Barrier(count)

    def run(index: int) -> T:
        start.wait()
        return asyncio.run(work(index))

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


async def test_it_satisfies_the_storage_protocol(memory: InMemoryJobStorage) -> None:
    assert isinstance(memory, JobStorage)


async def test_it_uses_the_system_clock_by_default() -> None:
    before = datetime.now(UTC)
    now = await InMemoryJobStorage().now()
    after = datetime.now(UTC)

    assert before <= now <= after


async def test_claimers_on_several_threads_never_share_a_job(memory: InMemoryJobStorage) -> None:
    inserted = set(await insert(memory, *[new_job() for _ in range(400)]))

    async def drain(index: int) -> list[str]:
        mine: list[str] = []
        while batch := await claimed_ids(memory, worker=f"thread-{index}", limit=3):
            mine += batch
        return mine

    groups = await asyncio.to_thread(_in_threads, THREADS, drain)

    flat = [job_id for group in groups for job_id in group]
    assert len(flat) == len(set(flat))
    assert set(flat) == inserted


async def test_a_per_type_limit_holds_across_threads(memory: InMemoryJobStorage) -> None:
    await insert(memory, *[new_job(REPORT) for _ in range(50)])

    async def grab(index: int) -> int:
        return len(await claim(memory, worker=f"thread-{index}", types={REPORT: 3}))

    counts = await asyncio.to_thread(_in_threads, THREADS, grab)

    assert sum(counts) == 3


async def test_unique_keys_hold_across_threads(memory: InMemoryJobStorage) -> None:
    async def enqueue(index: int) -> bool:
        [result] = await memory.insert_jobs([new_job(unique_key="once", data={"i": index})])
        return result.created

    created = await asyncio.to_thread(_in_threads, THREADS, enqueue)

    assert sum(created) == 1


async def test_a_listener_on_another_threads_loop_is_woken_by_an_insert_here(
    memory: InMemoryJobStorage,
) -> None:
    subscribed = threading.Event()
    woken = threading.Event()
    woken_on: list[int] = []

    async def listen() -> None:
        called = asyncio.Event()

        def on_wakeup() -> None:
            woken_on.append(threading.get_ident())
            called.set()

        unsubscribe = memory.add_wakeup_listener(on_wakeup)
        subscribed.set()
        await asyncio.wait_for(called.wait(), 10)
        unsubscribe()
        woken.set()

    listener = threading.Thread(target=asyncio.run, args=(listen(),))
    listener.start()
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        await insert_one(memory)
        assert await asyncio.to_thread(woken.wait, 10)
    finally:
        await asyncio.to_thread(listener.join, 10)

    assert woken_on == [listener.ident]


async def test_a_listener_whose_loop_closed_is_skipped(memory: InMemoryJobStorage) -> None:
    def subscribe_and_close() -> None:
        async def subscribe() -> None:
            memory.add_wakeup_listener(lambda: None)

        asyncio.run(subscribe())  # the loop is closed when this returns

    await asyncio.to_thread(subscribe_and_close)

    await insert_one(memory)  # must not raise


def test_subscribing_outside_an_event_loop_is_an_error(clock: ManualClock) -> None:
    with pytest.raises(RuntimeError):
        InMemoryJobStorage(clock=clock).add_wakeup_listener(lambda: None)


async def test_close_keeps_the_data_and_drops_listeners(memory: InMemoryJobStorage) -> None:
    job_id = await insert_one(memory)
    calls: list[int] = []
    memory.add_wakeup_listener(lambda: calls.append(1))

    await memory.close()
    await insert_one(memory)
    for _ in range(5):
        await asyncio.sleep(0)

    assert calls == []
    assert await memory.get_job(job_id) is not None


async def test_a_clock_set_back_makes_a_promoted_job_wait_again(
    memory: InMemoryJobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(memory, run_at=START + seconds(60))
    await insert_one(memory, REPORT)
    clock.advance(60)
    await claimed_ids(memory, types={REPORT: None})  # promotes the email job to "ready"
    clock.set(START)

    assert await claimed_ids(memory) == []
    clock.set(START + seconds(60))
    assert await claimed_ids(memory) == [job_id]


async def test_listing_stays_right_after_mass_purges(
    memory: InMemoryJobStorage, clock: ManualClock
) -> None:
    # Enough deletions to compact the enqueue-order index more than once.
    ids = await insert(memory, *[new_job() for _ in range(3000)])
    kept = ids[::7]
    for job_id in set(ids) - set(kept):
        await memory.cancel_job(job_id)
    clock.advance(1)

    assert await memory.purge_jobs(PurgeParams()) == len(ids) - len(kept)

    listed = [job.id for job in await memory.list_jobs(JobQuery(limit=10_000))]
    assert listed == kept[::-1]
    page = await memory.list_jobs(JobQuery(limit=2, cursor=kept[10]))
    assert [job.id for job in page] == [kept[9], kept[8]]


async def test_an_id_freed_by_a_purge_can_be_used_again(
    memory: InMemoryJobStorage, clock: ManualClock
) -> None:
    job = new_job(data={"v": 1})
    await insert(memory, job)
    await memory.cancel_job(job.id)
    clock.advance(1)
    await memory.purge_jobs(PurgeParams())

    await insert(memory, dataclasses.replace(job, data={"v": 2}))

    assert (await get(memory, job.id)).data == {"v": 2}
    assert [j.id for j in await memory.list_jobs(JobQuery())] == [job.id]


async def test_completing_many_jobs_keeps_exact_duration_totals(
    memory: InMemoryJobStorage, clock: ManualClock
) -> None:
    # Integer microseconds: adding and purging many odd durations leaves no float residue.
    for _ in range(50):
        await insert_one(memory)
        [claimed] = await claim(memory, limit=1)
        clock.advance(timedelta(microseconds=333_333))
        await complete(memory, claimed)
    await insert_one(memory)
    [last] = await claim(memory, limit=1)
    clock.advance(2)
    await complete(memory, last)
    clock.advance(timedelta(days=1))
    await memory.purge_jobs(PurgeParams(limit=50))

    metrics = await memory.get_metrics()
    assert metrics.completed == 1
    assert metrics.average_duration == 2.0
    assert (await get(memory, last.job.id)).status is JobStatus.COMPLETED
