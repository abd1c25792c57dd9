"""The counts behind `get_metrics` and `get_run_stats` stay exact through every transition.

SQLite and PostgreSQL keep them in counter tables that every statement moving a job or a run
between keys updates (migration 0009; the memory store counts its job table): after each step
here they must equal the counts taken from the records themselves (`list_jobs`,
`get_job_runs`), the oracle no counter can fool, per type, per queue and per run key. Several
handles completing at once (as several worker processes would) must leave them exact too.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from tests.storage.factories import (
    EMAIL,
    REPORT,
    claim,
    claim_one,
    complete,
    fail,
    insert,
    insert_one,
    new_job,
    seconds,
)
from tests.storage.harness import StoreHarness
from timecrisis.clock import ManualClock
from timecrisis.models import Job, JobStatus, Metrics, QueueMetrics, RunStatus, TypeMetrics
from timecrisis.storage._common import average_seconds
from timecrisis.storage._run_stats import RunStatsBuilder, duration_bucket
from timecrisis.storage.base import (
    ClaimParams,
    Completion,
    JobQuery,
    JobStorage,
    PurgeParams,
    RunStats,
    combined_claim,
)

_LIVE = (JobStatus.PENDING, JobStatus.RUNNING)


async def _every_job(storage: JobStorage) -> list[Job]:
    jobs: list[Job] = []
    cursor: str | None = None
    while page := await storage.list_jobs(JobQuery(limit=500, cursor=cursor)):
        jobs.extend(page)
        cursor = page[-1].id
    return jobs


async def _counted_from_records(storage: JobStorage) -> tuple[Metrics, list[RunStats]]:
    """What `get_metrics` and `get_run_stats` must answer, counted from every job and run."""
    jobs = await _every_job(storage)
    statuses: Counter[tuple[str, JobStatus]] = Counter((j.type, j.status) for j in jobs)
    dead: Counter[str] = Counter(j.type for j in jobs if j.dead_lettered)
    durations: dict[str, list[int]] = {}
    builder = RunStatsBuilder()
    for job in jobs:
        for run in await storage.get_job_runs(job.id):
            micros = 0 if run.duration is None else round(run.duration * 1_000_000)
            builder.add(
                job.type,
                run.status,
                bucket=None if run.duration is None else duration_bucket(run.duration),
                runs=1,
                retries=int(run.attempt > 1),
                duration_sum_us=micros,
                failure_kind=None if run.failure_kind is None else run.failure_kind.value,
            )
            if run.status is RunStatus.COMPLETED:
                durations.setdefault(job.type, []).append(micros)
    types = {
        job_type: TypeMetrics(
            **{s.value: statuses[job_type, s] for s in JobStatus},
            dead_letter=dead[job_type],
            average_duration=average_seconds(
                sum(durations.get(job_type, [])), len(durations.get(job_type, []))
            ),
        )
        for job_type in sorted({j.type for j in jobs})
    }
    every_duration = [d for per_type in durations.values() for d in per_type]
    live: Counter[tuple[str, JobStatus]] = Counter((j.queue, j.status) for j in jobs)
    queues = {
        queue: QueueMetrics(
            pending=live[queue, JobStatus.PENDING], running=live[queue, JobStatus.RUNNING]
        )
        for queue in sorted({j.queue for j in jobs if j.status in _LIVE})
    }
    metrics = Metrics(
        **{s.value: sum(statuses[t, s] for t in types) for s in JobStatus},
        dead_letter=sum(dead.values()),
        average_duration=average_seconds(sum(every_duration), len(every_duration)),
        types=types,
        queues=queues,
    )
    return metrics, builder.build()


async def _assert_exact(storage: JobStorage, step: str) -> None:
    expected_metrics, expected_stats = await _counted_from_records(storage)
    assert await storage.get_metrics() == expected_metrics, step
    assert await storage.get_run_stats() == expected_stats, step


async def test_counts_stay_exact_through_every_transition(
    storage: JobStorage, clock: ManualClock
) -> None:
    email = {EMAIL: None}
    await _assert_exact(storage, "empty")
    ids = await insert(storage, *(new_job(EMAIL, max_retries=1) for _ in range(4)))
    await insert(storage, new_job(REPORT), new_job(REPORT, expires_in=seconds(30), queue="bulk"))
    await _assert_exact(storage, "enqueue")
    await insert(storage, new_job(REPORT, queue="bulk"))  # alone: PostgreSQL's one-row insert
    await _assert_exact(storage, "a single enqueue")
    await insert(
        storage, *(new_job(REPORT, queue=q) for q in ("default", "bulk") for _ in range(100))
    )
    await _assert_exact(storage, "a large batch")  # PostgreSQL: COPY, counted apart
    [kept] = await insert(storage, new_job(REPORT, unique_key="nightly"))
    [taken] = await storage.insert_jobs([new_job(REPORT, unique_key="nightly")])
    assert (taken.id, taken.created) == (kept, False)
    await _assert_exact(storage, "enqueue with a unique key, and one skipped")

    first, second = await claim(storage, limit=2, types=email)
    await _assert_exact(storage, "claim")
    clock.advance(0.25)
    await complete(storage, first)
    await _assert_exact(storage, "complete")
    await fail(storage, second)  # retryable: pending again
    await _assert_exact(storage, "fail, to be retried")

    clock.advance(3600)
    dead = await claim_one(storage, types=email)
    clock.advance(2)
    await fail(storage, dead, retryable=False)
    await _assert_exact(storage, "dead-lettered")
    assert await storage.retry_job(dead.job.id)
    await _assert_exact(storage, "dead letter retried")

    assert await storage.cancel_job(ids[3]) == "canceled"
    await _assert_exact(storage, "canceled while pending")

    snoozed = await claim_one(storage, types=email)
    assert await storage.snooze_job(snoozed.ref, seconds(60)) is not None
    await _assert_exact(storage, "snoozed")
    released = await claim_one(storage, types=email)
    assert await storage.release_jobs([released.ref]) == [True]
    await _assert_exact(storage, "released")

    await claim_one(storage, types=email, lease_ttl=seconds(5))
    clock.advance(10)
    assert len(await storage.recover_expired_leases()) == 1
    await _assert_exact(storage, "lease recovered")

    assert len(await storage.expire_jobs()) == 1  # the report that expired unclaimed
    await _assert_exact(storage, "expired")

    both = combined_claim(storage)
    if both is not None:
        running = await claim_one(storage, types={REPORT: None})
        clock.advance(1.5)
        params = ClaimParams("worker-1", 5, timedelta(seconds=30), email)
        await both([Completion(running.ref)], params)
        await _assert_exact(storage, "complete and claim")

    # The claims of a worker that serves named queues are statements of their own.
    await insert(storage, *(new_job(EMAIL, queue="bulk") for _ in range(3)))
    bulk = ClaimParams("worker-2", 1, timedelta(seconds=30), email, queues=frozenset({"bulk"}))
    [in_bulk] = await storage.claim_jobs(bulk)
    await _assert_exact(storage, "claimed from a named queue")
    if both is not None:
        await both([Completion(in_bulk.ref)], bulk)
        await _assert_exact(storage, "complete and claim from a named queue")

    clock.advance(120)
    assert await storage.purge_jobs(PurgeParams()) > 0
    await _assert_exact(storage, "purged")


async def test_counts_stay_exact_when_several_handles_complete_at_once(
    harness: StoreHarness,
) -> None:
    handles = [await harness.open() for _ in range(4)]
    types = {EMAIL: None, REPORT: None}
    storage = handles[0]
    for _ in range(10):
        await insert(storage, *(new_job(t) for t in types for _ in range(20)))

    async def drain(handle: JobStorage, worker: str) -> None:
        params = ClaimParams(worker, 7, timedelta(minutes=5), types)
        while claimed := await handle.claim_jobs(params):
            await handle.complete_jobs([Completion(c.ref) for c in claimed[1:]])
            await fail(handle, claimed[0], retryable=False)

    await asyncio.gather(*(drain(h, f"worker-{i}") for i, h in enumerate(handles)))

    metrics = await storage.get_metrics()
    assert metrics.pending == metrics.running == 0
    assert metrics.completed + metrics.failed == 400
    assert metrics.failed == metrics.dead_letter > 0
    for handle in handles:
        await _assert_exact(handle, "after the race")


async def test_a_purge_removes_its_jobs_and_runs_from_the_counts(
    storage: JobStorage, clock: ManualClock
) -> None:
    for _ in range(3):
        await insert_one(storage, REPORT)
        claimed = await claim_one(storage, types={REPORT: None})
        clock.advance(4)
        await complete(storage, claimed)
    clock.advance(60)

    assert await storage.purge_jobs(PurgeParams(limit=2)) == 2

    metrics = await storage.get_metrics()
    assert metrics.completed == 1
    [stats] = await storage.get_run_stats()
    assert (stats.runs, stats.duration_count, stats.duration_sum) == (1, 1, 4.0)
    await _assert_exact(storage, "purged two of three")
