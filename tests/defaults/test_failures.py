"""Failures record what happened (DESIGN §4), end to end at the library's defaults, on every store:
the run keeps the handler's traceback and the failure's kind, the worker logs each failed attempt
with that traceback (WARNING, then ERROR when the job is dead-lettered), and `Job.worker` names
the worker of the last attempt after the job finished, in the hooks too."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from tests.waiting import eventually
from timecrisis import FailureKind, Job, JobContext, JobStatus, NonRetryableError, RunStatus


class Order(BaseModel):
    id: int


def _lookup(order: Order) -> str:
    headers: dict[str, str] = {}
    return headers["missing"]  # the line the traceback must point at


async def test_a_handlers_traceback_and_kind_are_recorded_and_logged(
    default_scheduler: DefaultSchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    failed: list[tuple[Job, BaseException]] = []
    scheduler = default_scheduler(on_job_failed=lambda job, error: failed.append((job, error)))

    # retry_delay is the job's own backoff, not a loop interval: one quick retry, then the DLQ.
    @scheduler.job("charge", concurrency=None, max_retries=1, retry_delay=0.05)
    async def charge(data: Order, ctx: JobContext) -> None:
        _lookup(data)

    caplog.set_level(logging.WARNING, logger="timecrisis")
    async with scheduler:
        job_id = await scheduler.enqueue("charge", {"id": 1})
        job = await scheduler.wait_for_job(job_id, timeout=10)

    assert (job.status, job.dead_lettered, job.failure_kind) == (
        JobStatus.FAILED,
        True,
        FailureKind.ERROR,
    )
    assert job.worker == scheduler.worker
    runs = await scheduler.get_job_runs(job_id)
    assert [(r.status, r.failure_kind) for r in runs] == [(RunStatus.FAILED, FailureKind.ERROR)] * 2
    for run in runs:
        assert run.error == "KeyError: 'missing'"
        assert run.traceback is not None
        assert run.traceback.startswith("Traceback (most recent call last):")
        assert "in charge" in run.traceback and "in _lookup" in run.traceback
        assert 'return headers["missing"]' in run.traceback
        assert run.traceback.rstrip().endswith("KeyError: 'missing'")
        # It starts at the handler: the worker's own frames are noise to the reader.
        assert "processing.py" not in run.traceback
    assert [(j.failure_kind, type(e)) for j, e in failed] == [(FailureKind.ERROR, KeyError)] * 2

    records = [r for r in caplog.records if job_id in r.getMessage()]
    warning = [r for r in records if r.levelno == logging.WARNING]
    error = [r for r in records if r.levelno == logging.ERROR]
    assert len(warning) == 1 and len(error) == 1, [r.getMessage() for r in records]
    assert "attempt 1 failed (error)" in warning[0].getMessage()
    assert "retrying at" in warning[0].getMessage()
    assert "failed for good" in error[0].getMessage()
    assert "dead-lettered" in error[0].getMessage()
    for record in (*warning, *error):
        assert "in _lookup" in record.getMessage()  # the traceback is in the log line


async def test_the_completed_hook_and_the_record_name_the_worker_that_ran_the_job(
    default_scheduler: DefaultSchedulerFactory,
) -> None:
    completed: list[Job] = []
    scheduler = default_scheduler(on_job_completed=completed.append)

    @scheduler.job("ship", concurrency=None)
    async def ship(data: Order, ctx: JobContext) -> int:
        return data.id

    async with scheduler:
        job_id = await scheduler.enqueue("ship", {"id": 3})
        job = await scheduler.wait_for_job(job_id, timeout=10)

        async def hook_called() -> bool:
            return bool(completed)

        await eventually(hook_called, timeout=5)

    assert (job.status, job.worker) == (JobStatus.COMPLETED, scheduler.worker)
    [seen] = completed
    assert (seen.id, seen.status, seen.worker) == (job_id, JobStatus.COMPLETED, scheduler.worker)


async def test_timeouts_and_non_retryable_errors_have_their_own_kinds(
    default_scheduler: DefaultSchedulerFactory,
) -> None:
    scheduler = default_scheduler()

    @scheduler.job("slow", concurrency=None, timeout="100ms")
    async def slow(data: Order, ctx: JobContext) -> None:
        await asyncio.sleep(30)

    @scheduler.job("refused", concurrency=None, max_retries=3)
    async def refused(data: Order, ctx: JobContext) -> None:
        raise NonRetryableError("the card was declined")

    async with scheduler:
        slow_id = await scheduler.enqueue("slow", {"id": 1})
        refused_id = await scheduler.enqueue("refused", {"id": 2})
        slow_job = await scheduler.wait_for_job(slow_id, timeout=10)
        refused_job = await scheduler.wait_for_job(refused_id, timeout=10)

    [slow_run] = await scheduler.get_job_runs(slow_id)
    assert (slow_job.failure_kind, slow_run.failure_kind) == (FailureKind.TIMEOUT,) * 2
    assert slow_run.traceback is None  # the handler raised nothing
    [refused_run] = await scheduler.get_job_runs(refused_id)  # not retried
    assert (refused_job.failure_kind, refused_run.failure_kind) == (FailureKind.NON_RETRYABLE,) * 2
    assert refused_run.traceback is not None and "in refused" in refused_run.traceback
