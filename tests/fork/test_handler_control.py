"""A fork-mode handler controls its job like an in-process one (DESIGN §4): `Retry(delay)` and
`Snooze(delay)` raised in the child cross to the worker with their delay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.fork import handlers
from tests.fork.conftest import SchedulerFactory
from timecrisis import (
    FailureKind,
    JobDefinition,
    JobScheduler,
    JobStatus,
    JobStorage,
    RunStatus,
)

DELAY = timedelta(milliseconds=300)


def _register(scheduler: JobScheduler, **options: Any) -> None:
    scheduler.register_job(
        JobDefinition(
            type="control", schema=handlers.Control, handle=handlers.control, concurrency=None,
            fork_mode=True, **options,
        )
    )  # fmt: skip


async def test_a_retry_raised_in_the_child_retries_after_its_delay(
    store: JobStorage, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    scheduler = make_scheduler(store)
    # An hour of backoff: a retry 300 ms later can only be the handler's delay.
    _register(scheduler, max_retries=2, retry_delay=3600)
    async with scheduler:
        job_id = await scheduler.enqueue(
            "control", {"action": "retry", "marker": str(tmp_path / "marker")}
        )
        job = await scheduler.wait_for_job(job_id, timeout=30)

    assert (job.status, job.attempts, job.result) == (JobStatus.COMPLETED, 2, 2)
    failed, completed = await scheduler.get_job_runs(job_id)
    assert (failed.status, failed.failure_kind) == (RunStatus.FAILED, FailureKind.ERROR)
    assert failed.error == "Retry: upstream busy (retry after 300ms)"
    assert failed.traceback is not None and "raise Retry(" in failed.traceback
    assert failed.finished_at is not None and completed.started_at is not None
    assert completed.started_at - failed.finished_at >= DELAY - timedelta(milliseconds=20)


async def test_a_retry_without_a_delay_in_the_child_uses_the_backoff(
    store: JobStorage, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    scheduler = make_scheduler(store)
    _register(scheduler, max_retries=1, retry_delay=0.05, backoff_strategy="linear")
    async with scheduler:
        job_id = await scheduler.enqueue(
            "control", {"action": "retry-backoff", "marker": str(tmp_path / "marker")}
        )
        job = await scheduler.wait_for_job(job_id, timeout=30)

    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    [failed, _] = await scheduler.get_job_runs(job_id)
    assert failed.error == "Retry: retry requested by the handler (retry after the backoff)"


async def test_a_snooze_raised_in_the_child_gives_the_job_back_uncharged(
    store: JobStorage, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    scheduler = make_scheduler(store)
    _register(scheduler, max_retries=0)  # a charged attempt would leave no second run
    async with scheduler:
        job_id = await scheduler.enqueue(
            "control", {"action": "snooze", "marker": str(tmp_path / "marker")}
        )
        job = await scheduler.wait_for_job(job_id, timeout=30)

    assert (job.status, job.attempts, job.result) == (JobStatus.COMPLETED, 1, 1)
    released, completed = await scheduler.get_job_runs(job_id)
    assert (released.attempt, released.status) == (1, RunStatus.RELEASED)
    assert released.error is None and released.failure_kind is None
    assert (completed.attempt, completed.status) == (1, RunStatus.COMPLETED)
    assert released.finished_at is not None and completed.started_at is not None
    assert completed.started_at - released.finished_at >= DELAY - timedelta(milliseconds=20)
    # A snooze is no failure: the child's traceback is not kept as an error log.
    logs = await scheduler.get_job_logs(job_id)
    assert not [log for log in logs if "raised in child process" in log.message]
