"""A job's propagation headers (`NewJob.headers`, `Job.headers`: the trace context of its
enqueue, docs/otel.md) are stored as given and read back by every path that returns the job, on
every store; a job without them reads back `None`."""

from __future__ import annotations

from tests.storage.factories import claim, complete, fail, get, insert, new_job
from timecrisis.clock import ManualClock
from timecrisis.models import JobStatus
from timecrisis.storage.base import JobQuery, JobStorage

HEADERS = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=é,other=1",  # any text: stored as JSON, never parsed by the store
    "baggage": "user=42",
}


async def test_headers_round_trip_through_insert_read_list_claim_and_finish(
    storage: JobStorage,
) -> None:
    traced, plain = await insert(storage, new_job(headers=HEADERS), new_job())

    assert (await get(storage, traced)).headers == HEADERS
    assert (await get(storage, plain)).headers is None
    listed = {job.id: job.headers for job in await storage.list_jobs(JobQuery())}
    assert listed == {traced: HEADERS, plain: None}

    claimed = {c.job.id: c for c in await claim(storage)}
    assert claimed[traced].job.headers == HEADERS  # what the worker's attempt span reads
    assert claimed[plain].job.headers is None

    await complete(storage, claimed[traced])
    outcome = await fail(storage, claimed[plain], retryable=False)
    assert outcome.job.headers is None
    done = await get(storage, traced)
    assert (done.status, done.headers) == (JobStatus.COMPLETED, HEADERS)


async def test_retries_keep_the_headers_of_the_enqueue(
    storage: JobStorage, clock: ManualClock
) -> None:
    [job_id] = await insert(storage, new_job(headers=HEADERS, max_retries=1))
    [first] = await claim(storage)
    outcome = await fail(storage, first)
    assert outcome.will_retry and outcome.job.headers == HEADERS

    clock.advance(3600)  # past the backoff
    [second] = await claim(storage)
    assert second.job.headers == HEADERS
    assert not (await fail(storage, second)).will_retry
    assert await storage.retry_job(job_id)  # dead-lettered, then back to pending by hand

    assert (await get(storage, job_id)).headers == HEADERS


async def test_a_batch_may_share_one_headers_mapping_and_reads_get_their_own_copy(
    storage: JobStorage,
) -> None:
    shared = dict(HEADERS)
    ids = await insert(storage, new_job(headers=shared), new_job(headers=shared))
    shared["traceparent"] = "changed after the insert"

    first = await get(storage, ids[0])
    assert first.headers == HEADERS
    assert first.headers is not None
    first.headers["baggage"] = "mutated by a reader"
    assert [(await get(storage, i)).headers for i in ids] == [HEADERS, HEADERS]
