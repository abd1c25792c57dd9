"""`cancel_job(terminate=True)` across nodes and on the handlers that cannot be interrupted
(DESIGN §4). Fast intervals: the cross-node request travels with the lease renewal."""

from __future__ import annotations

import asyncio
import threading
import time

from tests.scheduler.conftest import Payload, SchedulerFactory
from tests.waiting import eventually
from timecrisis import JobContext, JobScheduler, JobStatus, JobStorage, RunStatus


async def _is_running(scheduler: JobScheduler, job_id: str) -> bool:
    job = await scheduler.get_job(job_id)
    return job is not None and job.status == JobStatus.RUNNING


async def test_terminate_from_another_node_interrupts_the_handler(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    worker = make_scheduler(store, worker="worker-node")
    interrupted = asyncio.Event()

    @worker.job("sleeper", concurrency=None, max_retries=3)
    async def sleeper(data: Payload, ctx: JobContext) -> None:
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    # An operator's process: same store, never started, so the request reaches the worker only
    # through the store (its next lease renewal, every job_lock_ttl / 3 = 0.5 s here).
    operator = make_scheduler(store, worker="operator")
    async with worker:
        job_id = await worker.enqueue("sleeper", {})
        await eventually(lambda: _is_running(worker, job_id))
        assert await operator.cancel_job(job_id, terminate=True) is True
        job = await operator.wait_for_job(job_id, timeout=10)

    assert job.status == JobStatus.CANCELED
    assert interrupted.is_set()
    assert [r.status for r in await operator.get_job_runs(job_id)] == [RunStatus.COMPLETED]


async def test_a_plain_cancel_from_another_node_does_not_interrupt(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    worker = make_scheduler(store, worker="worker-node")
    saw: list[str] = []

    @worker.job("polite", concurrency=None)
    async def polite(data: Payload, ctx: JobContext) -> str:
        while not ctx.is_cancelled:
            await asyncio.sleep(0.02)
        saw.append("is_cancelled")
        return "stopped on request"

    operator = make_scheduler(store, worker="operator")
    async with worker:
        job_id = await worker.enqueue("polite", {})
        await eventually(lambda: _is_running(worker, job_id))
        assert await operator.cancel_job(job_id) is True
        job = await operator.wait_for_job(job_id, timeout=10)

    assert (job.status, job.result) == (JobStatus.CANCELED, "stopped on request")
    assert saw == ["is_cancelled"]


async def test_terminate_cannot_kill_a_sync_handler_which_ends_canceled_when_it_returns(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    returned = threading.Event()
    started = threading.Event()

    @scheduler.job("threaded", concurrency=None)
    def threaded(data: Payload, ctx: JobContext) -> str:
        started.set()
        while not ctx.is_cancelled:
            time.sleep(0.01)
        time.sleep(0.2)  # still busy after the request: the job must wait for this return
        returned.set()
        return "returned"

    async with scheduler:
        job_id = await scheduler.enqueue("threaded", {})
        await asyncio.to_thread(started.wait, 10)
        assert await scheduler.cancel_job(job_id, terminate=True) is True
        job = await scheduler.wait_for_job(job_id, timeout=10)
        assert returned.is_set()  # the job ended only once the thread had returned

    assert (job.status, job.result) == (JobStatus.CANCELED, "returned")


async def test_terminate_while_the_handler_ignores_it_then_stop_ends_canceled(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    """A handler that swallows the first CancelledError and keeps going: the worker's stop
    gives the run up (cancelling it again), and the job still ends canceled, never pending."""
    scheduler = make_scheduler(store, shutdown_timeout=0.2)
    started, swallowed = asyncio.Event(), asyncio.Event()

    @scheduler.job("swallower", concurrency=None, max_retries=3)
    async def swallower(data: Payload, ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            swallowed.set()
        await asyncio.sleep(600)

    await scheduler.start()
    job_id = await scheduler.enqueue("swallower", {})
    await asyncio.wait_for(started.wait(), timeout=10)
    assert await scheduler.cancel_job(job_id, terminate=True) is True
    await asyncio.wait_for(swallowed.wait(), timeout=10)
    assert await _is_running(scheduler, job_id)
    await scheduler.stop()

    job = await scheduler.get_job(job_id)
    assert job is not None and job.status == JobStatus.CANCELED
