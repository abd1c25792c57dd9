"""Claiming: which jobs, in which order, under which limits, and what a claim writes."""

from __future__ import annotations

from datetime import timedelta

from tests.storage.factories import (
    EMAIL,
    REPORT,
    START,
    claim,
    claim_one,
    claimed_ids,
    complete,
    fail,
    get,
    insert,
    insert_one,
    new_job,
    seconds,
)
from timecrisis.clock import ManualClock
from timecrisis.models import JobStatus, RunStatus
from timecrisis.storage.base import JobStorage

# ---- order ------------------------------------------------------------------------------------


async def test_claim_takes_higher_priorities_first_then_enqueue_order(storage: JobStorage) -> None:
    low_1 = await insert_one(storage, priority=-5)
    high_1 = await insert_one(storage, priority=10)
    mid = await insert_one(storage, priority=1)
    high_2 = await insert_one(storage, priority=10)
    low_2 = await insert_one(storage, priority=-5)

    assert await claimed_ids(storage) == [high_1, high_2, mid, low_1, low_2]


async def test_claim_keeps_enqueue_order_among_jobs_created_at_the_same_instant(
    storage: JobStorage,
) -> None:
    # The clock does not move: only the enqueue sequence can tell these jobs apart.
    ids = await insert(storage, *[new_job(data={"i": i}) for i in range(20)])

    first = await claimed_ids(storage, limit=7)
    rest = await claimed_ids(storage, limit=50)

    assert first + rest == ids


async def test_claim_orders_across_types_by_priority(storage: JobStorage) -> None:
    report = await insert_one(storage, REPORT, priority=3)
    email = await insert_one(storage, EMAIL, priority=2)
    urgent = await insert_one(storage, EMAIL, priority=4)

    assert await claimed_ids(storage) == [urgent, report, email]


async def test_a_delayed_job_that_became_due_is_ordered_by_priority_and_enqueue_order(
    storage: JobStorage, clock: ManualClock
) -> None:
    delayed = await insert_one(storage, priority=1, delay=seconds(10))
    urgent = await insert_one(storage, priority=5)
    later = await insert_one(storage, priority=1)
    clock.advance(10)

    assert await claimed_ids(storage) == [urgent, delayed, later]


# ---- what is claimable ------------------------------------------------------------------------


async def test_claim_skips_jobs_scheduled_in_the_future(
    storage: JobStorage, clock: ManualClock
) -> None:
    future = await insert_one(storage, run_at=START + seconds(60), priority=20)
    now = await insert_one(storage, priority=-20)

    assert await claimed_ids(storage) == [now]
    clock.advance(59)
    assert await claimed_ids(storage) == []
    clock.advance(1)
    assert await claimed_ids(storage) == [future]


async def test_claim_takes_a_job_whose_run_at_is_exactly_now(storage: JobStorage) -> None:
    job_id = await insert_one(storage, run_at=START)

    assert await claimed_ids(storage) == [job_id]


async def test_claim_skips_expired_jobs(storage: JobStorage, clock: ManualClock) -> None:
    await insert_one(storage, expires_in=seconds(30), priority=20)
    fresh = await insert_one(storage, expires_in=seconds(3600))
    clock.advance(30)  # expires_at == now: expired

    assert await claimed_ids(storage) == [fresh]


async def test_an_expired_job_stays_pending_until_it_is_expired(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, expires_in=seconds(5))
    clock.advance(10)

    assert await claimed_ids(storage) == []
    assert (await get(storage, job_id)).status is JobStatus.PENDING


async def test_claim_takes_a_job_before_it_expires(storage: JobStorage, clock: ManualClock) -> None:
    job_id = await insert_one(storage, expires_in=seconds(30))
    clock.advance(29)

    assert await claimed_ids(storage) == [job_id]


async def test_claim_never_takes_types_the_worker_cannot_run(storage: JobStorage) -> None:
    await insert_one(storage, "unknown")

    assert await claimed_ids(storage, types={EMAIL: None}) == []
    assert await claimed_ids(storage, types={}) == []


async def test_jobs_of_unknown_types_never_block_known_ones(storage: JobStorage) -> None:
    await insert(storage, *[new_job("unknown", priority=20) for _ in range(5)])
    known = await insert_one(storage, EMAIL, priority=-20)

    assert await claimed_ids(storage, limit=1, types={EMAIL: None}) == [known]


async def test_claim_returns_nothing_on_an_empty_store(storage: JobStorage) -> None:
    assert await claim(storage) == []


async def test_claimed_jobs_are_not_claimed_again(storage: JobStorage) -> None:
    ids = await insert(storage, new_job(), new_job())

    assert sorted(await claimed_ids(storage)) == sorted(ids)
    assert await claimed_ids(storage) == []
    assert await claimed_ids(storage, worker="worker-2") == []


# ---- limits -----------------------------------------------------------------------------------


async def test_claim_takes_at_most_the_requested_number_of_jobs(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(5)])

    assert await claimed_ids(storage, limit=3) == ids[:3]
    assert await claimed_ids(storage, limit=3) == ids[3:]


async def test_claim_with_limit_zero_takes_nothing(storage: JobStorage) -> None:
    await insert_one(storage)

    assert await claim(storage, limit=0) == []


async def test_per_type_limit_is_respected_within_one_claim(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(5)])

    assert await claimed_ids(storage, types={EMAIL: 2}) == ids[:2]


async def test_per_type_limit_counts_running_jobs_of_every_worker(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(5)])

    assert await claimed_ids(storage, worker="worker-1", types={EMAIL: 3}) == ids[:3]
    assert await claimed_ids(storage, worker="worker-2", types={EMAIL: 3}) == []
    assert await claimed_ids(storage, worker="worker-2", types={EMAIL: 4}) == ids[3:4]


async def test_a_type_at_its_limit_never_blocks_other_types(storage: JobStorage) -> None:
    await insert(storage, *[new_job(REPORT, priority=20) for _ in range(7)])
    await claimed_ids(storage, types={REPORT: 5})  # the limited type is now at its limit
    low = await insert(storage, *[new_job(EMAIL, priority=-20) for _ in range(3)])

    claimed = await claimed_ids(storage, worker="worker-2", types={REPORT: 5, EMAIL: None})

    assert claimed == low


async def test_per_type_limit_frees_a_slot_when_a_job_finishes(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(3)])
    [first] = await claim(storage, types={EMAIL: 1})
    assert await claim(storage, types={EMAIL: 1}) == []

    await complete(storage, first)

    assert await claimed_ids(storage, types={EMAIL: 1}) == [ids[1]]


async def test_per_type_limit_frees_a_slot_when_a_job_fails(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(2)])
    [first] = await claim(storage, types={EMAIL: 1})

    await fail(storage, first, retryable=False)

    assert await claimed_ids(storage, types={EMAIL: 1}) == [ids[1]]


async def test_an_unlimited_type_is_claimed_up_to_the_claim_limit(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(30)])

    assert await claimed_ids(storage, limit=30, types={EMAIL: None}) == ids


async def test_limits_of_several_types_apply_together(storage: JobStorage) -> None:
    emails = await insert(storage, *[new_job(EMAIL, priority=5) for _ in range(4)])
    reports = await insert(storage, *[new_job(REPORT) for _ in range(4)])

    claimed = await claimed_ids(storage, limit=10, types={EMAIL: 2, REPORT: 3})

    assert claimed == emails[:2] + reports[:3]


# ---- what a claim writes ----------------------------------------------------------------------


async def test_claim_marks_the_job_running_for_the_worker(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    clock.advance(5)

    claimed = await claim_one(storage, worker="worker-7")

    for job in (claimed.job, await get(storage, job_id)):
        assert job.id == job_id
        assert job.status is JobStatus.RUNNING
        assert job.attempts == 1
        assert job.started_at == START + seconds(5)
        assert job.worker == "worker-7"
        assert job.finished_at is None


async def test_claim_sets_the_lease_to_now_plus_the_ttl(
    storage: JobStorage, clock: ManualClock
) -> None:
    await insert_one(storage)
    clock.advance(3)

    claimed = await claim_one(storage, lease_ttl=timedelta(seconds=45))

    assert claimed.lease_expires_at == START + seconds(48)


async def test_claim_opens_a_running_run_for_the_attempt(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage)
    clock.advance(2)

    claimed = await claim_one(storage, worker="worker-3")

    [run] = await storage.get_job_runs(job_id)
    assert run.id == claimed.run_id
    assert run.job_id == job_id
    assert run.attempt == 1
    assert run.status is RunStatus.RUNNING
    assert run.worker == "worker-3"
    assert run.started_at == START + seconds(2)
    assert (run.finished_at, run.duration, run.error) == (None, None, None)
    assert run.progress == 0


async def test_every_claim_gets_a_fresh_token_and_run(storage: JobStorage) -> None:
    await insert(storage, new_job(), new_job())

    first, second = await claim(storage)

    assert first.token != second.token
    assert first.run_id != second.run_id
    assert first.ref.job_id == first.job.id
    assert (first.ref.token, first.ref.run_id) == (first.token, first.run_id)


async def test_a_reclaimed_job_counts_a_second_attempt_with_a_second_run(
    storage: JobStorage, clock: ManualClock
) -> None:
    job_id = await insert_one(storage, max_retries=1, backoff_strategy="linear", retry_delay=5)
    first = await claim_one(storage)
    await fail(storage, first)
    clock.advance(5)

    second = await claim_one(storage)

    assert second.job.attempts == 2
    assert second.token != first.token
    runs = await storage.get_job_runs(job_id)
    assert [(r.id, r.attempt) for r in runs] == [(first.run_id, 1), (second.run_id, 2)]
