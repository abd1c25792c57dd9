"""Issue 12 at the library's defaults, on every store: the sync twins from threads (a producer
that never starts, and a started worker), declared schedules upserted by `start()`, and
`drain()` with a retry."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from tests.pg_support import require_postgres
from timecrisis import JobContext, JobScheduler, JobStatus, JobStorage, PostgresJobStorage

WAIT = 20.0  # a safety net, never a timing assertion


class Item(BaseModel):
    n: int


def _register(scheduler: JobScheduler) -> None:
    @scheduler.job("square", concurrency=None)
    async def square(data: Item, ctx: JobContext) -> int:
        return data.n * data.n

    @scheduler.job("flaky", concurrency=None, max_retries=1, retry_delay="200ms")
    async def flaky(data: Item, ctx: JobContext) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("once")
        return ctx.attempt


def _sync_threads(*schedulers: JobScheduler) -> list[str]:
    """The private-loop threads of these schedulers (other tests' may still be alive)."""
    names = {f"timecrisis-sync-{s.worker}" for s in schedulers}
    return [t.name for t in threading.enumerate() if t.name in names]


async def test_threads_enqueue_through_a_producer_and_a_worker_runs_them(
    default_scheduler: DefaultSchedulerFactory,
) -> None:
    producer, worker = default_scheduler(), default_scheduler()
    _register(producer)
    _register(worker)
    await worker.start()

    def produce(base: int) -> list[str]:
        return [producer.enqueue_sync("square", {"n": base + i}) for i in range(10)]

    with ThreadPoolExecutor(4) as pool:
        batches = await asyncio.to_thread(lambda: list(pool.map(produce, (0, 10, 20, 30))))
    ids = [i for batch in batches for i in batch]
    done = [await worker.wait_for_job(i, timeout=WAIT) for i in ids]
    assert sorted(j.result for j in done) == sorted(n * n for n in range(40))
    await asyncio.to_thread(producer.close_sync)
    assert _sync_threads(producer) == []


async def test_twins_of_a_started_worker_from_its_threads(
    default_scheduler: DefaultSchedulerFactory,
) -> None:
    worker = default_scheduler()
    _register(worker)
    async with worker:

        def produce_and_wait() -> int:
            job_id = worker.enqueue_sync("square", Item(n=9))
            result = worker.wait_for_job_sync(job_id, timeout=WAIT).result
            assert isinstance(result, int)
            return result

        with ThreadPoolExecutor(4) as pool:
            results = await asyncio.to_thread(
                lambda: [f.result() for f in [pool.submit(produce_and_wait) for _ in range(4)]]
            )
    assert results == [81] * 4
    assert _sync_threads(worker) == []  # the started worker's own loop served them


async def test_start_upserts_declared_schedules(
    default_scheduler: DefaultSchedulerFactory,
) -> None:
    scheduler = default_scheduler()
    _register(scheduler)
    scheduler.periodic("squares", "square", {"n": 3}, schedule_type="interval", schedule_value="1s")
    await scheduler.start()
    stored = await scheduler.get_scheduled_job("squares")
    assert stored is not None and stored.enabled

    async def fired() -> bool:
        jobs = await scheduler.list_jobs(status=JobStatus.COMPLETED, type="square")
        return any(j.result == 9 for j in jobs)

    async with asyncio.timeout(WAIT):
        while not await fired():
            await asyncio.sleep(0.05)


async def test_drain_runs_the_retry(default_scheduler: DefaultSchedulerFactory) -> None:
    scheduler = default_scheduler()
    _register(scheduler)
    flaky = await scheduler.enqueue("flaky", {"n": 1})
    square = await scheduler.enqueue("square", {"n": 5})
    finished = {job.id: job for job in await scheduler.drain(timeout=WAIT)}
    assert set(finished) == {flaky, square}
    assert (finished[flaky].status, finished[flaky].result) == (JobStatus.COMPLETED, 2)
    assert finished[square].result == 25


async def test_enqueue_sync_in_the_callers_transaction(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    scheduler = default_scheduler()
    _register(scheduler)
    if not isinstance(store, PostgresJobStorage):  # no transactions to join: a TypeError
        with pytest.raises(TypeError, match="connection"):
            await asyncio.to_thread(scheduler.enqueue_sync, "square", {"n": 1}, connection=object())
        assert await scheduler.list_jobs() == []
        await asyncio.to_thread(scheduler.close_sync)
        return
    dsn = require_postgres()  # the store's database (its schema is a store option)

    def in_a_transaction() -> tuple[str, str]:
        with psycopg.connect(dsn) as conn:
            kept = scheduler.enqueue_sync("square", {"n": 6}, connection=conn)
            conn.commit()
            lost = scheduler.enqueue_sync("square", {"n": 7}, connection=conn)
            conn.rollback()
        return kept, lost

    async with scheduler:
        kept, lost = await asyncio.to_thread(in_a_transaction)
        done = await scheduler.wait_for_job(kept, timeout=WAIT)
    assert (done.status, done.result) == (JobStatus.COMPLETED, 36)
    assert await scheduler.get_job(lost) is None
