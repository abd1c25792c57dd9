"""Timeouts, cancel_job and stop() terminate the child, and no child outlives its attempt."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fork import handlers
from tests.fork.conftest import SchedulerFactory, eventually, logged_pid, process_exists
from timecrisis import JobDefinition, JobStatus, JobStorage, RunStatus
from timecrisis.execution.forked import TERMINATE_GRACE


def _blocker(job_type: str = "block", **fields: object) -> JobDefinition[handlers.Blocker]:
    return JobDefinition(
        type=job_type,
        schema=handlers.Blocker,
        handle=handlers.block,
        concurrency=None,
        fork_mode=True,
        **fields,  # type: ignore[arg-type]
    )


async def test_a_timeout_kills_the_child_even_one_that_ignores_sigterm(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(memory)
    scheduler.register_job(_blocker(timeout="500ms"))
    async with scheduler:
        polite = await scheduler.enqueue("block", {})
        stubborn = await scheduler.enqueue("block", {"ignore_sigterm": True})
        pids = [await logged_pid(scheduler, polite), await logged_pid(scheduler, stubborn)]
        jobs = [await scheduler.wait_for_job(i, timeout=30) for i in (polite, stubborn)]

    reason = (
        "JobTimeoutError: the job exceeded its timeout of 500ms; its child process was terminated"
    )
    assert [(job.status, job.fail_reason) for job in jobs] == [(JobStatus.FAILED, reason)] * 2
    # SIGTERM ended the first; the second outlived its grace period and got SIGKILL. Either
    # way the attempt ended only once the child was gone.
    assert not any(process_exists(pid) for pid in pids)


@pytest.mark.parametrize("force", [False, True])
async def test_stop_terminates_a_running_child_and_releases_its_job(
    memory: JobStorage, make_scheduler: SchedulerFactory, force: bool
) -> None:
    scheduler = make_scheduler(memory, shutdown_timeout=0.5)
    scheduler.register_job(_blocker())
    await scheduler.start()
    stubborn = await scheduler.enqueue("block", {})  # ignores the shutdown flag
    cooperative = await scheduler.enqueue("block", {"cooperative": True})
    pids = [await logged_pid(scheduler, stubborn), await logged_pid(scheduler, cooperative)]

    await scheduler.stop(force=force)

    assert not any(process_exists(pid) for pid in pids)  # no orphan
    job = await scheduler.get_job(stubborn)
    assert job is not None and job.status == JobStatus.PENDING and job.attempts == 0
    assert [r.status for r in await scheduler.get_job_runs(stubborn)] == [RunStatus.RELEASED]
    finished = await scheduler.get_job(cooperative)
    assert finished is not None
    if not force:
        # Graceful: `shutting_down` reached the child, which returned within shutdown_timeout.
        assert (finished.status, finished.result) == (JobStatus.COMPLETED, "saw the shutdown")


async def test_cancel_job_terminates_the_child_and_the_job_ends_canceled(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(memory)
    scheduler.register_job(_blocker())
    async with scheduler:
        job_id = await scheduler.enqueue("block", {})
        pid = await logged_pid(scheduler, job_id)
        assert await scheduler.cancel_job(job_id)
        job = await scheduler.wait_for_job(job_id, timeout=30)
        assert not process_exists(pid)

    assert job.status == JobStatus.CANCELED
    assert len(await scheduler.get_job_runs(job_id)) == 1


async def test_cancel_with_terminate_kills_the_child_at_once_even_one_that_ignores_sigterm(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    """No SIGTERM and grace period first: the child is killed, well within TERMINATE_GRACE (2 s),
    which a plain cancel of this child would have to wait out."""
    scheduler = make_scheduler(store)
    scheduler.register_job(_blocker(max_retries=3))
    async with scheduler:
        job_id = await scheduler.enqueue("block", {"ignore_sigterm": True})
        pid = await logged_pid(scheduler, job_id)
        began = time.monotonic()
        assert await scheduler.cancel_job(job_id, terminate=True)
        job = await scheduler.wait_for_job(job_id, timeout=30)
        took = time.monotonic() - began
        assert not process_exists(pid)

    assert job.status == JobStatus.CANCELED
    assert took < TERMINATE_GRACE, f"terminate took {took:.2f}s"
    assert len(await scheduler.get_job_runs(job_id)) == 1


async def test_terminate_during_a_plain_cancels_grace_period_kills_at_once(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(memory)
    scheduler.register_job(_blocker())
    async with scheduler:
        job_id = await scheduler.enqueue("block", {"ignore_sigterm": True})
        pid = await logged_pid(scheduler, job_id)
        began = time.monotonic()
        assert await scheduler.cancel_job(job_id)  # SIGTERM, ignored: the grace period runs
        await asyncio.sleep(0.2)
        assert await scheduler.cancel_job(job_id, terminate=True)
        job = await scheduler.wait_for_job(job_id, timeout=30)
        took = time.monotonic() - began
        assert not process_exists(pid)

    assert job.status == JobStatus.CANCELED
    assert took < TERMINATE_GRACE, f"terminate took {took:.2f}s"


async def test_the_lease_of_a_busy_child_is_kept_by_the_worker(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    """The child never touches its lease; the worker renews it while the child lives."""
    scheduler = make_scheduler(memory, job_lock_ttl=0.3)
    scheduler.register_job(_blocker())
    async with scheduler:
        job_id = await scheduler.enqueue("block", {"cooperative": True})
        pid = await logged_pid(scheduler, job_id)
        await asyncio.sleep(1.0)  # over three lease lengths: the reaper would have struck
        job = await scheduler.get_job(job_id)
        assert job is not None and job.status == JobStatus.RUNNING and job.attempts == 1
        assert process_exists(pid)
    runs = await scheduler.get_job_runs(job_id)
    assert [r.status for r in runs] == [RunStatus.COMPLETED]


async def test_processes_a_handler_leaves_behind_do_not_outlive_its_attempt(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(memory)
    scheduler.register_job(
        JobDefinition(
            type="leaky",
            schema=handlers.Work,
            handle=handlers.start_a_process,
            concurrency=None,
            fork_mode=True,
        )
    )
    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("leaky", {}), timeout=30)

    assert job.status == JobStatus.COMPLETED and isinstance(job.result, int)
    # Killed with the child's process group; its parent (the child) is gone, so init reaps it.
    await eventually(lambda: _gone(job.result))


async def _gone(pid: int) -> bool:
    return not process_exists(pid, zombies_count=False)
