"""Queues and pauses at the library's defaults (docs/flow-control.md), on every store: a paused
type runs nothing while other work flows; a resume starts it at once, not at the next 5 s
processing interval; a worker claims only the queues it serves.

Each test prints what it measured (run with `-s` to see the figures)."""

from __future__ import annotations

import time

from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from timecrisis import JobContext, JobScheduler, JobStatus, JobStorage

# Far below the 5 s `job_processing_interval` that would otherwise find the resumed job.
PROMPT = 2.0


class Work(BaseModel):
    n: int = 0


def _worker(
    default_scheduler: DefaultSchedulerFactory, ran: list[str], **options: object
) -> JobScheduler:
    scheduler = default_scheduler(**options)

    @scheduler.job("held", concurrency=None, priority=20)
    async def held(data: Work, ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    @scheduler.job("marker", concurrency=None, priority=-20)
    async def marker(data: Work, ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    @scheduler.job("mailer", concurrency=None, queue="mail")
    async def mailer(data: Work, ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    return scheduler


async def test_a_paused_type_runs_nothing_and_starts_at_once_when_resumed(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    ran: list[str] = []
    worker = _worker(default_scheduler, ran)
    operator = JobScheduler(store)  # another process's API (the CLI, a web app): never started
    assert await operator.pause("held") is True
    await worker.start()
    held = await worker.enqueue("held", {})
    # The marker ranks below `held`, so the claim that ran it passed over the paused job.
    marker = await worker.enqueue("marker", {})
    assert (await worker.wait_for_job(marker, timeout=10)).status == JobStatus.COMPLETED
    job = await worker.get_job(held)
    assert job is not None and job.status == JobStatus.PENDING and held not in ran
    assert await worker.list_paused() == ["held"]

    resumed_at = time.monotonic()
    assert await operator.resume("held") is True
    finished = await worker.wait_for_job(held, timeout=10)
    waited = time.monotonic() - resumed_at

    print(f"resumed job finished {waited:.3f}s after resume() on {type(store).__name__}")
    assert finished.status == JobStatus.COMPLETED
    assert waited < PROMPT
    assert await worker.list_paused() == []


async def test_a_worker_claims_only_the_queues_it_serves(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    ran: list[str] = []
    default_only = _worker(default_scheduler, ran, queues=["default"])
    await default_only.start()
    mail = await default_only.enqueue("mailer", {})  # the definition's queue: mail
    moved = await default_only.enqueue("mailer", {}, queue="default")  # overridden per job
    assert (await default_only.wait_for_job(moved, timeout=10)).status == JobStatus.COMPLETED
    job = await default_only.get_job(mail)
    assert job is not None and (job.status, job.queue) == (JobStatus.PENDING, "mail")
    assert (await default_only.get_metrics()).queues["mail"].pending == 1  # visibly waiting

    mail_worker = _worker(default_scheduler, ran, queues=["mail"])
    started_at = time.monotonic()
    await mail_worker.start()
    finished = await mail_worker.wait_for_job(mail, timeout=10)

    print(f"mail job finished {time.monotonic() - started_at:.3f}s after its worker started")
    assert finished.status == JobStatus.COMPLETED
    assert finished.worker == mail_worker.worker
