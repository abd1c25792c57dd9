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


async def test_a_paused_queue_with_a_backlog_ahead_holds_back_no_other_queue(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory
) -> None:
    """A worker of every queue (the default) while a queue is paused: the paused queue's jobs,
    ahead in claim order (higher priority, enqueued first), and jobs delayed into the future
    ahead of them too, never delay the due jobs of the other queues; on resume the backlog runs
    at once (docs/flow-control.md, docs/architecture.md "Delayed jobs")."""
    ran: list[str] = []
    worker = _worker(default_scheduler, ran)
    operator = JobScheduler(store)
    assert await operator.pause("bulk") is True
    # Of the same type as the due job, so they are in its head, ahead of it in claim order.
    backlog = await worker.enqueue_many("held", [{"n": n} for n in range(200)], queue="bulk")
    await worker.enqueue_many("held", [{"n": n} for n in range(200)], delay="1h")
    await worker.start()

    started_at = time.monotonic()
    due = await worker.enqueue("held", {}, queue="default")
    assert (await worker.wait_for_job(due, timeout=10)).status == JobStatus.COMPLETED
    waited = time.monotonic() - started_at
    assert not set(backlog) & set(ran)

    resumed_at = time.monotonic()
    assert await operator.resume("bulk") is True
    last = await worker.wait_for_job(backlog[-1], timeout=10)
    drained = time.monotonic() - resumed_at

    print(
        f"\n[{type(store).__name__}] other queue's job done {waited:.3f}s after enqueue; "
        f"200 resumed jobs done {drained:.3f}s after resume()"
    )
    assert last.status == JobStatus.COMPLETED
    assert waited < PROMPT
    assert drained < PROMPT + 3
