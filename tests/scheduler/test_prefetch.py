"""Prefetch: a worker may claim more jobs than it has free slots while its handlers are short.

What must hold: never more handlers at once than `max_concurrent_jobs`; no prefetch for long
handlers, for types with a cluster-wide limit, or with `prefetch=0`; prefetched jobs that have
not started go back to the queue at `stop()` and when they wait too long for a slot, without
charging an attempt; a prefetched job cancelled before it starts never runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.scheduler.conftest import Payload, SchedulerFactory, eventually
from timecrisis import JobContext, JobScheduler, JobStatus, RunStatus
from timecrisis.loops._prefetch import MAX_WAIT
from timecrisis.storage.base import JobStorage


class _Watch:
    """Handlers report here: how many run at once, and how many jobs the store has running
    (claimed, prefetched ones included) while they do."""

    def __init__(self, scheduler: JobScheduler) -> None:
        self.scheduler = scheduler
        self.active = 0
        self.most_active = 0
        self.most_claimed = 0
        self.ran: list[int] = []

    async def run(self, n: int, seconds: float = 0.0) -> None:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            claimed = (await self.scheduler.get_metrics()).running
            self.most_claimed = max(self.most_claimed, claimed)
            await asyncio.sleep(seconds)
            self.ran.append(n)
        finally:
            self.active -= 1


async def _run_all(scheduler: JobScheduler, job_type: str, count: int) -> list[str]:
    ids = await scheduler.enqueue_many(job_type, [{"n": n} for n in range(count)])
    for job_id in ids:
        job = await scheduler.wait_for_job(job_id, timeout=30)
        assert job.status == JobStatus.COMPLETED
    return ids


async def test_short_jobs_are_prefetched_but_never_run_beyond_the_concurrency(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store, max_concurrent_jobs=2)
    watch = _Watch(scheduler)

    @scheduler.job("quick", concurrency=None)
    async def quick(data: Payload, ctx: JobContext) -> None:
        await watch.run(data.n)

    async with scheduler:
        await _run_all(scheduler, "quick", 60)

    assert sorted(watch.ran) == list(range(60))
    assert watch.most_active <= 2
    assert watch.most_claimed > 2  # jobs were held beyond the two slots


@pytest.mark.parametrize(
    ("options", "concurrency_limit", "seconds"),
    [
        ({"prefetch": 0}, None, 0.0),  # turned off
        ({}, 50, 0.0),  # a type with a cluster-wide limit
        ({}, None, 0.3),  # handlers too long for prefetch to pay
    ],
    ids=["prefetch-0", "limited-type", "long-handlers"],
)
async def test_no_prefetch_when_off_for_limited_types_and_for_long_handlers(
    store: JobStorage,
    make_scheduler: SchedulerFactory,
    options: dict[str, Any],
    concurrency_limit: int | None,
    seconds: float,
) -> None:
    scheduler = make_scheduler(store, max_concurrent_jobs=2, **options)
    watch = _Watch(scheduler)

    @scheduler.job("work", concurrency=concurrency_limit)
    async def work(data: Payload, ctx: JobContext) -> None:
        await watch.run(data.n, seconds)

    async with scheduler:
        await _run_all(scheduler, "work", 12 if seconds else 40)

    assert watch.most_active <= 2
    assert watch.most_claimed <= 2


async def _prefetch_behind_a_blocker(
    scheduler: JobScheduler, gate: asyncio.Event, started: asyncio.Event, ran: list[int]
) -> list[str]:
    """A warmed-up worker with one slot: quick jobs first (they teach it that jobs are short),
    then a blocking job and, behind it, quick jobs that it prefetches while the blocker runs."""

    @scheduler.job("blocker", concurrency=None)
    async def blocker(data: Payload, ctx: JobContext) -> None:
        started.set()
        await gate.wait()

    @scheduler.job("quick", concurrency=None)
    async def quick(data: Payload, ctx: JobContext) -> None:
        ran.append(data.n)

    await scheduler.start()
    await _run_all(scheduler, "quick", 5)
    ran.clear()
    # All due at one moment, the blocker first in claim order: one claim takes them together.
    due = datetime.now(UTC) + timedelta(seconds=0.5)
    await scheduler.enqueue("blocker", {}, priority=10, run_at=due)
    waiting = await scheduler.enqueue_many("quick", [{"n": n} for n in range(3)], run_at=due)
    await asyncio.wait_for(started.wait(), 10)

    async def all_claimed() -> bool:
        jobs = [await scheduler.get_job(job_id) for job_id in waiting]
        return all(job is not None and job.status == JobStatus.RUNNING for job in jobs)

    await eventually(all_claimed)
    return waiting


async def test_stop_hands_prefetched_jobs_back_at_once_without_charging_them(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store, max_concurrent_jobs=1, shutdown_timeout=10)
    gate, started, ran = asyncio.Event(), asyncio.Event(), list[int]()
    waiting = await _prefetch_behind_a_blocker(scheduler, gate, started, ran)

    stopping = asyncio.create_task(scheduler.stop())

    async def handed_back() -> bool:
        jobs = [await scheduler.get_job(job_id) for job_id in waiting]
        return all(job is not None and job.status == JobStatus.PENDING for job in jobs)

    await eventually(handed_back)  # while stop() still waits for the blocker
    assert not stopping.done()
    gate.set()
    await stopping

    assert ran == []  # none of them started after the stop began
    for job_id in waiting:
        job = await scheduler.get_job(job_id)
        assert job is not None
        assert (job.status, job.attempts, job.worker) == (JobStatus.PENDING, 0, None)
        runs = await scheduler.get_job_runs(job_id)
        assert [r.status for r in runs] == [RunStatus.RELEASED]


async def test_a_prefetched_job_that_waits_too_long_goes_to_an_idle_worker(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    assert MAX_WAIT <= 5  # the test waits this long
    busy = make_scheduler(store, max_concurrent_jobs=1)
    gate, started, ran = asyncio.Event(), asyncio.Event(), list[int]()
    waiting = await _prefetch_behind_a_blocker(busy, gate, started, ran)

    idle = make_scheduler(store, max_concurrent_jobs=1)
    idle_ran: list[int] = []

    @idle.job("quick", concurrency=None)
    async def quick(data: Payload, ctx: JobContext) -> None:
        idle_ran.append(data.n)

    await idle.start()
    try:
        for job_id in waiting:
            job = await idle.wait_for_job(job_id, timeout=20)
            assert job.status == JobStatus.COMPLETED
            assert job.attempts == 1  # the hand-back cost no attempt
            runs = await idle.get_job_runs(job_id)
            assert [(r.status, r.worker) for r in runs] == [
                (RunStatus.RELEASED, busy.worker),
                (RunStatus.COMPLETED, idle.worker),
            ]
    finally:
        gate.set()
    assert sorted(idle_ran) == [0, 1, 2]
    assert ran == []


async def test_a_prefetched_job_cancelled_before_it_starts_never_runs(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store, max_concurrent_jobs=1)
    gate, started, ran = asyncio.Event(), asyncio.Event(), list[int]()
    waiting = await _prefetch_behind_a_blocker(scheduler, gate, started, ran)

    assert await scheduler.cancel_job(waiting[0])
    gate.set()
    job = await scheduler.wait_for_job(waiting[0], timeout=10)
    assert job.status == JobStatus.CANCELED
    for job_id in waiting[1:]:
        assert (await scheduler.wait_for_job(job_id, timeout=10)).status == JobStatus.COMPLETED
    assert sorted(ran) == [1, 2]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "4"])
async def test_prefetch_must_be_a_non_negative_int(store: JobStorage, bad: object) -> None:
    with pytest.raises(ValueError, match="prefetch must be an int >= 0"):
        JobScheduler(store, prefetch=bad)  # type: ignore[arg-type]
    scheduler = JobScheduler(store)
    with pytest.raises(ValueError, match="prefetch must be an int >= 0"):
        scheduler.configure(prefetch=bad)  # type: ignore[arg-type]
