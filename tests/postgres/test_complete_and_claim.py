"""`complete_and_claim` on PostgreSQL: a worker's completions and its next claim in one
statement (unlimited types) or one pipelined transaction (limited ones). Both paths keep what
the two separate calls guarantee: fencing, per-type limits, claim order.
tests/sqlite/test_complete_and_claim.py runs the same cases on SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.postgres.conftest import StoreFactory
from timecrisis.models import JobStatus, RunStatus
from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimedJob, ClaimParams, ClaimRef, Completion, NewJob

pytestmark = pytest.mark.postgres

LIMITED, FREE = "limited", "free"
LEASE = timedelta(minutes=5)


def _jobs(job_type: str, count: int) -> list[NewJob]:
    return [NewJob(id=new_id(), type=job_type, data={"n": n}) for n in range(count)]


def _params(limit: int, **type_limits: int | None) -> ClaimParams:
    return ClaimParams(worker="w", limit=limit, lease_ttl=LEASE, type_limits=type_limits)


def _done(claimed: list[ClaimedJob]) -> list[Completion]:
    return [Completion(c.ref, {"ok": c.job.data["n"]}) for c in claimed]


@pytest.mark.parametrize("cap", [None, 5], ids=["unlimited", "limited"])
async def test_completions_and_the_next_claim_are_written_together(
    make_store: StoreFactory, cap: int | None
) -> None:
    store = make_store()
    await store.insert_jobs(_jobs(FREE, 5))
    first = await store.claim_jobs(_params(2, free=cap))

    finished, second = await store.complete_and_claim(_done(first), _params(2, free=cap))

    assert all(at is not None for at in finished)
    assert [c.job.data["n"] for c in second] == [2, 3]  # enqueue order, as claim_jobs
    for claimed in first:
        job = await store.get_job(claimed.job.id)
        assert job is not None
        assert (job.status, job.result, job.finished_at) == (
            JobStatus.COMPLETED,
            {"ok": claimed.job.data["n"]},
            finished[0],
        )
        [run] = await store.get_job_runs(claimed.job.id)
        assert run.status == RunStatus.COMPLETED
    for claimed in second:
        job = await store.get_job(claimed.job.id)
        assert job is not None and job.status == JobStatus.RUNNING and job.attempts == 1


@pytest.mark.parametrize("cap", [None, 5], ids=["unlimited", "limited"])
async def test_a_stale_token_completes_nothing_but_the_claim_still_happens(
    make_store: StoreFactory, cap: int | None
) -> None:
    store = make_store()
    await store.insert_jobs(_jobs(FREE, 2))
    [held] = await store.claim_jobs(_params(1, free=cap))
    stale = Completion(ClaimRef(held.job.id, "not-the-token", held.run_id), None)

    finished, claimed = await store.complete_and_claim([stale], _params(1, free=cap))

    assert finished == [None]
    assert len(claimed) == 1 and claimed[0].job.id != held.job.id
    job = await store.get_job(held.job.id)
    assert job is not None and job.status == JobStatus.RUNNING  # untouched
    assert held.job.id in (await store.renew_claims([held.ref], LEASE)).valid  # still ours


async def test_the_claim_takes_the_slots_its_completions_free(make_store: StoreFactory) -> None:
    store = make_store()
    await store.insert_jobs(_jobs(LIMITED, 3))
    first = await store.claim_jobs(_params(5, limited=1))
    assert len(first) == 1  # the type's one slot is taken

    finished, second = await store.complete_and_claim(_done(first), _params(5, limited=1))

    assert finished[0] is not None
    assert len(second) == 1  # the slot the completion freed, and not one more


async def test_a_job_listed_twice_completes_once(make_store: StoreFactory) -> None:
    store = make_store()
    await store.insert_jobs(_jobs(FREE, 1))
    [claimed] = await store.claim_jobs(_params(1, free=None))
    twice = [Completion(claimed.ref, None), Completion(claimed.ref, None)]

    finished, again = await store.complete_and_claim(twice, _params(1, free=None))

    assert finished[0] is not None and finished[1] is None
    assert again == []
