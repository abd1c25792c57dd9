"""Races between handles on one store, as between processes: each test can fail if a decision
is taken outside one atomic call. No sleeps: `asyncio.gather` runs the contenders together,
and `asyncio.sleep(0)` between steps lets them interleave even on a store whose calls never
yield (memory)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import timedelta

import pytest

from tests.storage.factories import (
    LEASE,
    REPORT,
    START,
    claim,
    claim_one,
    claimed_ids,
    insert,
    new_job,
    schedule_spec,
)
from tests.storage.harness import StoreHarness
from timecrisis.clock import ManualClock
from timecrisis.storage.base import (
    LEADER_LOCK,
    Completion,
    Failure,
    JobQuery,
    JobStorage,
    ScheduleAdvance,
)

HANDLES = 6


@pytest.fixture
async def handles(harness: StoreHarness) -> list[JobStorage]:
    return [await harness.open() for _ in range(HANDLES)]


def _assert_disjoint(groups: Sequence[Sequence[str]]) -> None:
    for first, second in itertools.combinations(groups, 2):
        assert not set(first) & set(second), "two claimers got the same job"
    flat = [job_id for group in groups for job_id in group]
    assert len(flat) == len(set(flat)), "one claimer got the same job twice"


async def test_concurrent_claimers_never_share_a_job_and_together_take_every_job(
    handles: list[JobStorage],
) -> None:
    inserted = set(await insert(handles[0], *[new_job() for _ in range(60)]))

    async def drain(storage: JobStorage, worker: str) -> list[str]:
        mine: list[str] = []
        while batch := await claimed_ids(storage, worker=worker, limit=4):
            mine += batch
            await asyncio.sleep(0)
        return mine

    groups = await asyncio.gather(*(drain(h, f"worker-{i}") for i, h in enumerate(handles)))

    _assert_disjoint(groups)
    assert set().union(*groups) == inserted


async def test_concurrent_single_claims_each_get_a_different_job(
    handles: list[JobStorage],
) -> None:
    inserted = set(await insert(handles[0], *[new_job() for _ in range(HANDLES)]))

    groups = await asyncio.gather(
        *(claimed_ids(h, worker=f"worker-{i}", limit=1) for i, h in enumerate(handles))
    )

    _assert_disjoint(groups)
    assert set().union(*groups) <= inserted


async def test_a_per_type_limit_of_two_holds_under_concurrent_claimers(
    handles: list[JobStorage],
) -> None:
    await insert(handles[0], *[new_job(REPORT) for _ in range(20)])

    for _ in range(4):  # each round: race, check the limit, finish what was claimed
        rounds = await asyncio.gather(
            *(claim(h, worker=f"worker-{i}", types={REPORT: 2}) for i, h in enumerate(handles))
        )
        claimed = [c for group in rounds for c in group]
        assert 1 <= len(claimed) <= 2
        assert (await handles[0].get_metrics()).types[REPORT].running == len(claimed)
        results = await handles[0].complete_jobs([Completion(c.ref) for c in claimed])
        assert None not in results


async def test_a_per_type_limit_holds_while_other_workers_still_run_jobs(
    handles: list[JobStorage],
) -> None:
    await insert(handles[0], *[new_job(REPORT) for _ in range(10)])
    await claim_one(handles[0], worker="busy", types={REPORT: 2})

    rounds = await asyncio.gather(
        *(claim(h, worker=f"worker-{i}", types={REPORT: 2}) for i, h in enumerate(handles))
    )

    assert sum(len(group) for group in rounds) <= 1
    assert (await handles[0].get_metrics()).types[REPORT].running <= 2


async def test_two_concurrent_lock_acquisitions_have_exactly_one_winner(
    handles: list[JobStorage],
) -> None:
    for round_number in range(5):
        name = f"{LEADER_LOCK}:{round_number}"
        tokens = await asyncio.gather(
            *(h.acquire_lock(name, f"node-{i}", LEASE) for i, h in enumerate(handles))
        )
        assert sum(token is not None for token in tokens) == 1


async def test_an_expired_lock_is_taken_over_by_exactly_one_contender(
    handles: list[JobStorage], clock: ManualClock
) -> None:
    old = await handles[0].acquire_lock(LEADER_LOCK, "node-old", LEASE)
    assert old is not None
    clock.advance(LEASE)

    tokens = await asyncio.gather(
        *(h.acquire_lock(LEADER_LOCK, f"node-{i}", LEASE) for i, h in enumerate(handles))
    )

    winners = [token for token in tokens if token is not None]
    assert len(winners) == 1
    assert await handles[0].renew_lock(LEADER_LOCK, old, LEASE) is False
    assert await handles[0].renew_lock(LEADER_LOCK, winners[0], LEASE) is True


async def test_concurrent_inserts_with_one_unique_key_create_one_job(
    handles: list[JobStorage],
) -> None:
    results = await asyncio.gather(*(h.insert_jobs([new_job(unique_key="once")]) for h in handles))

    flat = [result for group in results for result in group]
    assert sum(result.created for result in flat) == 1
    assert len({result.id for result in flat}) == 1
    assert len(await handles[0].list_jobs(JobQuery())) == 1


async def test_concurrent_advances_of_one_tick_fire_one_job(handles: list[JobStorage]) -> None:
    schedule = await handles[0].upsert_schedule(schedule_spec(next_run_at=START))

    def advance(expected_offset: timedelta) -> ScheduleAdvance:
        job = new_job(scheduled_job_id=schedule.id, schedule_fire_at=START)
        expected = START + expected_offset
        return ScheduleAdvance(schedule.id, expected, expected + timedelta(hours=1), job=job)

    # Half the contenders read the schedule before anyone advanced it, half after: the
    # compare-and-set stops the first kind, the tick's uniqueness stops the second.
    offsets = [timedelta(0), timedelta(hours=1)] * (HANDLES // 2)
    results = await asyncio.gather(
        *(h.advance_schedule(advance(offset)) for h, offset in zip(handles, offsets, strict=True))
    )

    assert sum(result.job_id is not None for result in results) == 1
    assert len(await handles[0].list_jobs(JobQuery())) == 1


async def test_concurrent_advances_with_the_same_expectation_have_one_winner(
    handles: list[JobStorage],
) -> None:
    schedule = await handles[0].upsert_schedule(schedule_spec(next_run_at=START))

    results = await asyncio.gather(
        *(
            h.advance_schedule(
                ScheduleAdvance(
                    schedule.id,
                    START,
                    START + timedelta(hours=1),
                    job=new_job(scheduled_job_id=schedule.id, schedule_fire_at=START),
                )
            )
            for h in handles
        )
    )

    assert sum(result.advanced for result in results) == 1
    assert sum(result.job_id is not None for result in results) == 1


async def test_completing_and_failing_one_claim_at_once_lets_exactly_one_through(
    handles: list[JobStorage],
) -> None:
    await insert(handles[0], new_job(max_retries=3))
    claimed = await claim_one(handles[0])

    completed, failed = await asyncio.gather(
        handles[1].complete_jobs([Completion(claimed.ref)]),
        handles[2].fail_job(Failure(claimed.ref, "RuntimeError: late")),
    )

    assert (completed != [None]) + (failed is not None) == 1


async def test_concurrent_reapers_recover_each_expired_lease_once(
    handles: list[JobStorage], clock: ManualClock
) -> None:
    inserted = set(await insert(handles[0], *[new_job(max_retries=1) for _ in range(12)]))
    await claim(handles[0], limit=12)
    clock.advance(LEASE)

    outcomes = await asyncio.gather(*(h.recover_expired_leases(limit=3) for h in handles))

    groups = [[outcome.job.id for outcome in group] for group in outcomes]
    _assert_disjoint(groups)
    recovered = set().union(*groups)
    rest = {o.job.id for o in await handles[0].recover_expired_leases(limit=100)}
    assert recovered | rest == inserted
    assert not recovered & rest
