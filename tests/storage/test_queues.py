"""Queues (docs/flow-control.md): a claim takes only the queues it names, inside its one atomic
call. Jobs of other queues are never claimed and never block the served ones, whatever their
priority or number; per-type limits count across every queue."""

from __future__ import annotations

import asyncio

import pytest

from tests.storage.factories import (
    EMAIL,
    REPORT,
    START,
    claim,
    claimed_ids,
    get,
    insert,
    insert_one,
    new_job,
    schedule_spec,
)
from tests.storage.harness import StoreHarness
from timecrisis.storage.base import JobStorage, ScheduleAdvance


async def test_a_job_keeps_the_queue_it_was_inserted_in(storage: JobStorage) -> None:
    plain = await insert_one(storage)
    mailed = await insert_one(storage, queue="mail")

    assert (await get(storage, plain)).queue == "default"
    assert (await get(storage, mailed)).queue == "mail"


async def test_a_claim_of_named_queues_takes_only_their_jobs(storage: JobStorage) -> None:
    mail = await insert(storage, *[new_job(queue="mail") for _ in range(3)])
    bulk = await insert(storage, *[new_job(REPORT, queue="bulk") for _ in range(2)])
    await insert(storage, *[new_job(queue="other") for _ in range(4)])
    await insert(storage, new_job())  # the default queue

    assert await claimed_ids(storage, queues={"mail"}) == mail
    assert await claimed_ids(storage, queues={"bulk", "nothing-here"}) == bulk
    assert await claimed_ids(storage, queues={"mail", "bulk"}) == []


async def test_a_claim_of_every_queue_takes_jobs_of_any_queue_in_claim_order(
    storage: JobStorage,
) -> None:
    low = await insert_one(storage, queue="a", priority=1)
    high = await insert_one(storage, queue="b", priority=5)
    mid = await insert_one(storage, queue="default", priority=3)

    assert await claimed_ids(storage) == [high, mid, low]


async def test_other_queues_at_the_head_never_delay_the_served_queue(storage: JobStorage) -> None:
    # 100 high-priority jobs of another queue first, of the same type and of another one.
    await insert(storage, *[new_job(priority=20, queue="elsewhere") for _ in range(50)])
    await insert(storage, *[new_job(REPORT, priority=20, queue="elsewhere") for _ in range(50)])
    mine = await insert(storage, *[new_job(priority=-5, queue="mine") for _ in range(12)])

    assert await claimed_ids(storage, limit=10, queues={"mine"}) == mine[:10]


async def test_claims_of_several_queues_merge_them_in_claim_order(storage: JobStorage) -> None:
    a1 = await insert_one(storage, queue="a", priority=1)
    b1 = await insert_one(storage, queue="b", priority=2)
    a2 = await insert_one(storage, queue="a", priority=3)
    await insert_one(storage, queue="c", priority=20)

    assert await claimed_ids(storage, queues={"a", "b"}) == [a2, b1, a1]


async def test_a_per_type_limit_counts_the_running_jobs_of_every_queue(
    storage: JobStorage,
) -> None:
    await insert(storage, *[new_job(queue="a") for _ in range(3)])
    await insert(storage, *[new_job(queue="b") for _ in range(3)])
    await claim(storage, types={EMAIL: 3}, queues={"a"}, limit=1)

    claimed = await claim(storage, types={EMAIL: 3}, queues={"a", "b"})

    assert len(claimed) == 2  # one runs from queue a already: 3 in all, across both queues
    assert (await storage.get_metrics()).types[EMAIL].running == 3


async def test_a_schedule_stores_the_queue_of_its_jobs_and_an_upsert_updates_it(
    storage: JobStorage,
) -> None:
    created = await storage.upsert_schedule(schedule_spec(next_run_at=START, queue="cron"))
    moved = await storage.upsert_schedule(schedule_spec(next_run_at=START, queue="nightly"))
    tick = new_job(scheduled_job_id=moved.id, schedule_fire_at=START, queue=moved.queue)

    result = await storage.advance_schedule(ScheduleAdvance(moved.id, START, None, job=tick))

    assert created.queue == "cron"
    assert moved.queue == "nightly"
    assert moved.next_run_at == START  # a new queue never moves a tick
    assert result.job_id is not None
    assert (await get(storage, result.job_id)).queue == "nightly"


async def test_metrics_count_pending_and_running_jobs_per_queue(storage: JobStorage) -> None:
    await insert(storage, *[new_job(queue="mail") for _ in range(3)])
    await insert(storage, *[new_job(REPORT, queue="bulk") for _ in range(2)])
    await claim(storage, queues={"mail"}, limit=1)

    queues = (await storage.get_metrics()).queues

    assert {name: (q.pending, q.running) for name, q in queues.items()} == {
        "bulk": (2, 0),
        "mail": (2, 1),
    }


@pytest.fixture
async def handles(harness: StoreHarness) -> list[JobStorage]:
    return [await harness.open() for _ in range(3)]


async def test_concurrent_claimers_never_take_another_queues_job(
    handles: list[JobStorage],
) -> None:
    queues = ("q0", "q1", "q2")
    by_queue = {
        q: set(await insert(handles[0], *[new_job(queue=q) for _ in range(20)])) for q in queues
    }
    # A decoy that no claimer serves, at the head of every queue.
    decoys = set(
        await insert(handles[0], *[new_job(priority=20, queue="nobody") for _ in range(20)])
    )

    async def drain(storage: JobStorage, queue: str) -> list[str]:
        mine: list[str] = []
        while batch := await claimed_ids(storage, worker=queue, limit=3, queues={queue}):
            mine += batch
            await asyncio.sleep(0)
        return mine

    groups = await asyncio.gather(*(drain(h, q) for h, q in zip(handles, queues, strict=True)))

    for queue, group in zip(queues, groups, strict=True):
        assert len(group) == len(set(group))
        assert set(group) == by_queue[queue]
    metrics = (await handles[0].get_metrics()).queues
    assert metrics["nobody"].pending == len(decoys)
