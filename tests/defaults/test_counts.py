"""Kept counts at the library's defaults, on every store: after a default worker has run a
large batch (one COPY on PostgreSQL), a single enqueue and a job that fails for good, the
metrics the dashboard and `/metrics` read (migration 0009's counters on SQLite and PostgreSQL)
say exactly what happened, with no job left pending or running."""

from __future__ import annotations

from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from timecrisis import JobContext, JobStatus, NonRetryableError

BATCH = 200  # over PostgreSQL's COPY threshold


class Item(BaseModel):
    n: int = 0


async def test_metrics_count_every_job_a_default_worker_ran(
    default_scheduler: DefaultSchedulerFactory,
) -> None:
    scheduler = default_scheduler()

    @scheduler.job("item", concurrency=None)
    async def item(data: Item, ctx: JobContext) -> None:
        return None

    @scheduler.job("broken", concurrency=None, max_retries=0)
    async def broken(data: Item, ctx: JobContext) -> None:
        raise NonRetryableError("always")

    async with scheduler:
        ids = await scheduler.enqueue_many("item", [{"n": n} for n in range(BATCH)])
        ids.append(await scheduler.enqueue("item", {"n": BATCH}))
        failing = await scheduler.enqueue("broken", {})
        for job_id in ids:
            assert (await scheduler.wait_for_job(job_id, timeout=30)).status == JobStatus.COMPLETED
        assert (await scheduler.wait_for_job(failing, timeout=30)).status == JobStatus.FAILED

        metrics = await scheduler.get_metrics()

    items, broke = metrics.types["item"], metrics.types["broken"]
    assert (items.completed, items.pending, items.running, items.failed) == (BATCH + 1, 0, 0, 0)
    assert (broke.completed, broke.failed, broke.dead_letter) == (0, 1, 1)
    assert (metrics.completed, metrics.failed, metrics.pending, metrics.running) == (
        BATCH + 1,
        1,
        0,
        0,
    )
    assert items.average_duration is not None
