"""Queues and pauses through the scheduler's API, end to end on every store
(docs/flow-control.md): the definition's queue and its per-job override, the workers' `queues=`,
schedules firing into their type's queue, pause/resume from any scheduler on the store, and bad
input refused at the boundary with nothing written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.scheduler.conftest import Payload, SchedulerFactory
from tests.waiting import eventually
from timecrisis import JobContext, JobDefinition, JobScheduler, JobStatus, JobValidationError
from timecrisis.storage.base import JobQuery, JobStorage

BAD_NAMES = ["", "x" * 1025, "nul\x00", 7, b"mail"]


def _register(scheduler: JobScheduler, ran: list[str]) -> None:
    @scheduler.job("mailer", concurrency=None, queue="mail")
    async def mailer(data: Payload, ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    @scheduler.job("plain", concurrency=None)
    async def plain(data: Payload, ctx: JobContext) -> None:
        ran.append(ctx.job_id)


async def test_jobs_take_their_definitions_queue_unless_the_enqueue_names_another(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store)
    _register(scheduler, [])
    handle = scheduler.job("handled", concurrency=None, queue="h")(_noop)

    ids = {
        "mail": await scheduler.enqueue("mailer", {}),
        "default": await scheduler.enqueue("plain", {}),
        "urgent": await scheduler.enqueue("mailer", {}, queue="urgent"),
        "h": await handle.enqueue({}),
        "h2": await handle.enqueue({}, queue="h2"),
    }
    await scheduler.enqueue_many("plain", [{}, {}], queue="batch")
    synced = await _in_thread(lambda: scheduler.enqueue_sync("mailer", {}, queue="sync"))

    for queue, job_id in ids.items():
        job = await scheduler.get_job(job_id)
        assert job is not None and job.queue == queue
    assert [job.queue for job in await store.list_jobs(JobQuery(type="plain"))] == [
        "batch",
        "batch",
        "default",
    ]
    synced_job = await scheduler.get_job(synced)
    assert synced_job is not None and synced_job.queue == "sync"


async def test_workers_run_only_the_queues_they_serve(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    ran: list[str] = []
    mail_only = make_scheduler(store, queues=["mail"])
    _register(mail_only, ran)
    await mail_only.start()
    plain = await mail_only.enqueue("plain", {})
    mail = await mail_only.enqueue("mailer", {})

    assert (await mail_only.wait_for_job(mail, timeout=10)).status == JobStatus.COMPLETED
    job = await mail_only.get_job(plain)
    assert job is not None and job.status == JobStatus.PENDING and plain not in ran
    assert (await mail_only.get_metrics()).queues["default"].pending == 1

    every_queue = make_scheduler(store)
    _register(every_queue, ran)
    await every_queue.start()
    assert (await every_queue.wait_for_job(plain, timeout=10)).status == JobStatus.COMPLETED


async def test_a_schedule_fires_into_its_types_queue(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler(store, queues=["nobody"])  # leads, fires, runs nothing
    _register(scheduler, [])
    await scheduler.schedule("tick", "mailer", {}, schedule_type="interval", schedule_value="1s")
    stored = await scheduler.get_scheduled_job("tick")
    assert stored is not None and stored.queue == "mail"
    await scheduler.start()

    async def fired() -> bool:
        return bool(await store.list_jobs(JobQuery(type="mailer")))

    await eventually(fired)
    [job] = (await store.list_jobs(JobQuery(type="mailer")))[:1]
    assert (job.queue, job.status) == ("mail", JobStatus.PENDING)


async def test_pause_and_resume_from_any_scheduler_on_the_store(
    store: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    ran: list[str] = []
    worker = make_scheduler(store)
    _register(worker, ran)
    operator = JobScheduler(store)  # never started: the CLI's and a web app's kind
    assert await operator.pause("mail") is True  # a queue
    assert await operator.pause("plain") is True  # a type
    assert await operator.pause("plain") is False
    await worker.start()
    held = [await worker.enqueue("mailer", {}), await worker.enqueue("plain", {})]
    free = await worker.enqueue("mailer", {}, queue="elsewhere")

    assert (await worker.wait_for_job(free, timeout=10)).status == JobStatus.COMPLETED
    assert not set(held) & set(ran)
    assert await worker.list_paused() == ["mail", "plain"]

    assert await operator.resume("mail") is True
    assert await operator.resume("plain") is True
    assert await operator.resume("plain") is False
    for job_id in held:
        assert (await worker.wait_for_job(job_id, timeout=10)).status == JobStatus.COMPLETED


@pytest.mark.parametrize("queue", BAD_NAMES)
async def test_a_bad_queue_is_a_typed_error_everywhere_and_nothing_is_written(
    store: JobStorage, make_scheduler: SchedulerFactory, queue: object
) -> None:
    scheduler = make_scheduler(store)
    _register(scheduler, [])
    handle = scheduler.job("handled", concurrency=None)(_noop)

    with pytest.raises(JobValidationError, match="queue"):
        await scheduler.enqueue("plain", {}, queue=queue)  # type: ignore[arg-type]
    with pytest.raises(JobValidationError, match="queue"):
        await scheduler.enqueue_many("plain", [{}, {}], queue=queue)  # type: ignore[arg-type]
    with pytest.raises(JobValidationError, match="queue"):
        await handle.enqueue({}, queue=queue)
    with pytest.raises(JobValidationError, match="queue"):
        await _in_thread(lambda: scheduler.enqueue_sync("plain", {}, queue=queue))  # type: ignore[arg-type]
    with pytest.raises(JobValidationError, match="queue"):
        JobDefinition(type="t", schema=Payload, handle=_noop, concurrency=None, queue=queue)  # type: ignore[arg-type]
    with pytest.raises(JobValidationError, match="queue"):
        scheduler.job("decorated", concurrency=None, queue=queue)(_noop)
    with pytest.raises(JobValidationError, match="queue"):
        JobScheduler(store, queues=[queue])  # type: ignore[list-item]
    with pytest.raises(JobValidationError):
        await scheduler.pause(queue)  # type: ignore[arg-type]
    with pytest.raises(JobValidationError):
        await scheduler.resume(queue)  # type: ignore[arg-type]

    assert await store.list_jobs(JobQuery()) == []
    assert await scheduler.list_paused() == []
    assert "decorated" not in scheduler.job_definitions


@pytest.mark.parametrize("queues", ["mail", [], ()])
def test_a_worker_must_name_its_queues_as_a_non_empty_list(
    store: JobStorage, queues: object
) -> None:
    with pytest.raises(JobValidationError, match="queues"):
        JobScheduler(store, queues=queues)  # type: ignore[arg-type]


async def _noop(data: Payload, ctx: JobContext) -> None:
    return None


async def _in_thread(call: Callable[[], str]) -> str:
    """A sync twin called from a thread, as sync code (a Django view) calls it."""
    return await asyncio.to_thread(call)
