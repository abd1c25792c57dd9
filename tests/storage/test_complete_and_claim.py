"""`complete_and_claim` and the declared capabilities, on every backend.

A store that declares `capabilities.complete_and_claim` gives a worker's completions and its
next claim the semantics of `complete_jobs` then `claim_jobs`, in one transaction; a store that
does not declares it and refuses the call. tests/postgres and tests/sqlite add the engine's own
paths (pipelined, limited types)."""

from __future__ import annotations

import pytest

from tests.storage.factories import EMAIL, REPORT, claim_params, get, insert, new_job
from tests.storage.harness import StoreHarness
from timecrisis.models import JobStatus, RunStatus
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimRef,
    Completion,
    JobStorage,
    StoreCapabilities,
    capabilities_of,
    combined_claim,
)

DECLARED = {
    "reference": StoreCapabilities(),  # a plain class: declares nothing, has no such method
    "memory": StoreCapabilities(),
    "sqlite": StoreCapabilities(complete_and_claim=True, cross_process_wakeups=True),
    "postgres": StoreCapabilities(
        complete_and_claim=True,
        transactional_insert=True,
        cross_process_wakeups=True,
        streamed_insert=True,
    ),
}


def _done(claimed: list[ClaimedJob]) -> list[Completion]:
    return [Completion(c.ref, {"ok": c.job.id}) for c in claimed]


async def _combined_store(harness: StoreHarness) -> JobStorage | None:
    """The store, if it declares `complete_and_claim`; else None, after checking the worker
    would not use it (no test is skipped: each asserts what holds for its store)."""
    store = await harness.open()
    if not capabilities_of(store).complete_and_claim:
        assert combined_claim(store) is None
        return None
    return store


async def test_every_store_declares_its_capabilities(
    harness: StoreHarness, backend_name: str
) -> None:
    store = await harness.open()
    assert isinstance(store, JobStorage)
    assert capabilities_of(store) == DECLARED[backend_name]
    assert (combined_claim(store) is not None) == DECLARED[backend_name].complete_and_claim


async def test_a_store_without_complete_and_claim_refuses_it(harness: StoreHarness) -> None:
    store = await harness.open()
    if capabilities_of(store).complete_and_claim:
        assert combined_claim(store) is not None  # the other tests here cover its semantics
        return
    await insert(store, new_job())
    if not hasattr(store, "complete_and_claim"):  # a plain protocol class, like the reference
        assert combined_claim(store) is None
        return
    with pytest.raises(NotImplementedError):
        await store.complete_and_claim([], claim_params())
    assert await store.claim_jobs(claim_params()) != []  # nothing was claimed by the refusal


async def test_a_connection_is_refused_without_transactional_insert(
    harness: StoreHarness,
) -> None:
    store = await harness.open()
    if capabilities_of(store).transactional_insert:
        return  # tests/postgres/test_transactional_enqueue.py covers its insert
    with pytest.raises(TypeError):
        await store.insert_jobs([new_job()], connection=object())
    assert await store.claim_jobs(claim_params()) == []  # nothing written


async def test_completions_and_the_next_claim_write_what_the_two_calls_write(
    harness: StoreHarness,
) -> None:
    store = await _combined_store(harness)
    if store is None:
        return
    combine = combined_claim(store)
    assert combine is not None
    await insert(store, *(new_job(data={"n": n}) for n in range(5)))
    first = await store.claim_jobs(claim_params(limit=2))

    finished, second = await combine(_done(first), claim_params(limit=2))

    assert all(at is not None for at in finished)
    assert [c.job.data for c in second] == [{"n": 2}, {"n": 3}]  # claim order, as claim_jobs
    for claimed, at in zip(first, finished, strict=True):
        job = await get(store, claimed.job.id)
        assert (job.status, job.result, job.finished_at) == (
            JobStatus.COMPLETED,
            {"ok": claimed.job.id},
            at,
        )
        [run] = await store.get_job_runs(claimed.job.id)
        assert run.status is RunStatus.COMPLETED
    for claimed in second:
        job = await get(store, claimed.job.id)
        assert (job.status, job.attempts, job.worker) == (JobStatus.RUNNING, 1, "worker-1")


async def test_the_claim_sees_the_slots_the_completions_free(harness: StoreHarness) -> None:
    store = await _combined_store(harness)
    if store is None:
        return
    combine = combined_claim(store)
    assert combine is not None
    await insert(store, *(new_job(REPORT) for _ in range(3)))
    limited = claim_params(types={REPORT: 1})
    first = await store.claim_jobs(limited)
    assert len(first) == 1

    finished, second = await combine(_done(first), limited)

    assert finished[0] is not None
    assert len(second) == 1  # the slot the completion freed, and not one more


async def test_a_stale_token_completes_nothing_and_the_claim_still_happens(
    harness: StoreHarness,
) -> None:
    store = await _combined_store(harness)
    if store is None:
        return
    combine = combined_claim(store)
    assert combine is not None
    await insert(store, new_job(), new_job())
    [held] = await store.claim_jobs(claim_params(limit=1))
    stale = Completion(ClaimRef(held.job.id, "not-the-token", held.run_id))

    finished, claimed = await combine([stale], claim_params(limit=1))

    assert finished == [None]
    assert [c.job.id for c in claimed] != [held.job.id] and len(claimed) == 1
    assert (await get(store, held.job.id)).status is JobStatus.RUNNING  # untouched
    assert held.job.id in (await store.renew_claims([held.ref], claim_params().lease_ttl)).valid


async def test_trivial_inputs_are_the_other_call_alone(harness: StoreHarness) -> None:
    store = await _combined_store(harness)
    if store is None:
        return
    combine = combined_claim(store)
    assert combine is not None
    await insert(store, new_job(EMAIL), new_job(EMAIL))

    nothing_done, claimed = await combine([], claim_params(limit=1))
    assert nothing_done == [] and len(claimed) == 1

    finished, none_claimed = await combine(_done(claimed), claim_params(limit=0))
    assert finished[0] is not None and none_claimed == []
    assert (await get(store, claimed[0].job.id)).status is JobStatus.COMPLETED
