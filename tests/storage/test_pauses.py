"""Pause and resume (docs/flow-control.md): a paused job type or queue is not claimed by any
claimer, decided inside the claim's one atomic call; running jobs are left alone; a paused
backlog at the head never delays the other jobs; a resume wakes the listeners."""

from __future__ import annotations

import asyncio

import pytest

from tests.storage.factories import (
    EMAIL,
    REPORT,
    claim,
    claim_one,
    claim_params,
    claimed_ids,
    complete,
    get,
    insert,
    insert_one,
    new_job,
)
from tests.storage.harness import StoreHarness
from timecrisis.errors import JobValidationError
from timecrisis.models import JobStatus
from timecrisis.storage.base import Completion, JobStorage, combined_claim


async def test_pause_and_resume_report_whether_they_changed_anything(
    storage: JobStorage,
) -> None:
    assert await storage.pause(REPORT) is True
    assert await storage.pause(REPORT) is False
    assert await storage.pause("bulk") is True
    assert await storage.list_paused() == ["bulk", REPORT]

    assert await storage.resume(REPORT) is True
    assert await storage.resume(REPORT) is False
    assert await storage.resume("never-paused") is False
    assert await storage.list_paused() == ["bulk"]


async def test_a_paused_type_is_not_claimed_until_resumed(storage: JobStorage) -> None:
    report = await insert_one(storage, REPORT)
    email = await insert_one(storage, EMAIL)
    await storage.pause(REPORT)

    assert await claimed_ids(storage) == [email]
    assert await claimed_ids(storage) == []

    await storage.resume(REPORT)
    assert await claimed_ids(storage) == [report]


async def test_a_paused_queue_is_not_claimed_by_any_claim_that_serves_it(
    storage: JobStorage,
) -> None:
    bulk = await insert(storage, new_job(queue="bulk"), new_job(REPORT, queue="bulk"))
    mail = await insert_one(storage, queue="mail")
    await storage.pause("bulk")

    assert await claimed_ids(storage, queues={"bulk"}) == []
    assert await claimed_ids(storage) == [mail]  # every queue: still not the paused one

    await storage.resume("bulk")
    assert await claimed_ids(storage, queues={"bulk", "mail"}) == bulk


async def test_a_name_pauses_both_the_type_and_the_queue_it_names(storage: JobStorage) -> None:
    await insert_one(storage, REPORT)  # type `report`, queue default
    await insert_one(storage, EMAIL, queue=REPORT)  # type email, queue `report`
    other = await insert_one(storage, EMAIL)
    await storage.pause(REPORT)

    assert await claimed_ids(storage) == [other]


async def test_a_paused_backlog_at_the_head_never_delays_the_other_jobs(
    storage: JobStorage,
) -> None:
    await insert(storage, *[new_job(REPORT, priority=20) for _ in range(100)])
    await insert(storage, *[new_job(EMAIL, priority=20, queue="held") for _ in range(100)])
    free = await insert(storage, *[new_job(EMAIL, priority=-20) for _ in range(12)])
    await storage.pause(REPORT)
    await storage.pause("held")

    assert await claimed_ids(storage, limit=10) == free[:10]
    assert await claimed_ids(storage, limit=10, queues={"held", "default"}) == free[10:]


@pytest.mark.parametrize("queues", [3, 40], ids=["few-queues", "a-queue-per-tenant"])
async def test_while_a_queue_is_paused_a_claim_of_every_queue_keeps_claim_order(
    storage: JobStorage, queues: int
) -> None:
    """A claim of every queue reads the open queues' heads while anything is paused, or, past
    a store's limit of heads, steps over the paused jobs: either way the jobs it takes are
    the ones a walk of the queue in claim order would take, from every queue not paused."""
    await insert(storage, *[new_job(priority=50, queue="held") for _ in range(30)])
    open_jobs = [
        new_job(EMAIL if n % 2 else REPORT, priority=n % 7, queue=f"tenant-{n % queues}")
        for n in range(2 * queues)
    ]
    await insert(storage, *open_jobs)
    await storage.pause("held")
    order = sorted(range(len(open_jobs)), key=lambda n: (-open_jobs[n].priority, n))
    wanted = [open_jobs[n].id for n in order]

    first = await claim(storage, limit=5)
    assert [c.job.id for c in first] == wanted[:5]
    done = [Completion(c.ref, None) for c in first]
    rest = claim_params(limit=len(wanted))
    combined = combined_claim(storage)  # PostgreSQL: a statement of its own
    if combined is not None:
        _, second = await combined(done, rest)
    else:
        await storage.complete_jobs(done)
        second = await storage.claim_jobs(rest)
    assert [c.job.id for c in second] == wanted[5:]


async def test_a_running_job_of_a_paused_type_still_finishes(storage: JobStorage) -> None:
    await insert_one(storage, REPORT)
    running = await claim_one(storage)
    await storage.pause(REPORT)

    await complete(storage, running)

    assert (await get(storage, running.job.id)).status is JobStatus.COMPLETED


async def test_a_resume_wakes_the_listeners(storage: JobStorage) -> None:
    """Its jobs may be claimable at once: workers must not wait for their next interval. (A
    hint only, like every wake-up: stores that hear other processes may wake more often.)"""
    await storage.pause(REPORT)
    woken = asyncio.Event()
    unsubscribe = storage.add_wakeup_listener(woken.set)
    try:
        await storage.resume(REPORT)
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        unsubscribe()


@pytest.mark.parametrize("name", ["", "x" * 1025, 42, None, "nul\x00"])
async def test_a_name_no_store_can_hold_is_refused_and_nothing_is_written(
    storage: JobStorage, name: object
) -> None:
    with pytest.raises(JobValidationError):
        await storage.pause(name)  # type: ignore[arg-type]
    with pytest.raises(JobValidationError):
        await storage.resume(name)  # type: ignore[arg-type]

    assert await storage.list_paused() == []


@pytest.fixture
async def handles(harness: StoreHarness) -> list[JobStorage]:
    return [await harness.open() for _ in range(3)]


async def test_concurrent_claimers_never_take_a_paused_type_or_queue(
    handles: list[JobStorage],
) -> None:
    await insert(handles[0], *[new_job(REPORT, priority=10) for _ in range(30)])
    await insert(handles[0], *[new_job(EMAIL, priority=10, queue="held") for _ in range(30)])
    free = set(await insert(handles[0], *[new_job(EMAIL) for _ in range(30)]))
    await handles[1].pause(REPORT)
    await handles[2].pause("held")

    async def drain(storage: JobStorage, worker: str) -> list[str]:
        mine: list[str] = []
        while batch := await claimed_ids(storage, worker=worker, limit=4):
            mine += batch
            await asyncio.sleep(0)
        return mine

    groups = await asyncio.gather(*(drain(h, f"worker-{i}") for i, h in enumerate(handles)))

    flat = [job_id for group in groups for job_id in group]
    assert len(flat) == len(set(flat))
    assert set(flat) == free
    metrics = await handles[0].get_metrics()
    assert metrics.types[REPORT].pending == 30
    assert metrics.queues["held"].pending == 30
    assert len(await claim(handles[0], queues={"held"})) == 0
