"""`list_jobs`: newest first, filters, and keyset paging by cursor."""

from __future__ import annotations

from typing import Any

from tests.storage.factories import (
    EMAIL,
    REPORT,
    claim_one,
    complete,
    fail,
    insert,
    insert_one,
    new_job,
)
from timecrisis.models import JobStatus
from timecrisis.storage.base import JobQuery, JobStorage


async def _ids(storage: JobStorage, **query: Any) -> list[str]:
    return [job.id for job in await storage.list_jobs(JobQuery(**query))]


async def test_list_jobs_returns_the_newest_first(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(5)])

    assert await _ids(storage) == ids[::-1]


async def test_list_jobs_on_an_empty_store_is_empty(storage: JobStorage) -> None:
    assert await _ids(storage) == []


async def test_list_jobs_respects_the_limit(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(5)])

    assert await _ids(storage, limit=2) == [ids[4], ids[3]]


async def test_list_jobs_filters_by_status(storage: JobStorage) -> None:
    done, running, pending = await insert(storage, new_job(), new_job(), new_job())
    await complete(storage, await claim_one(storage))
    await claim_one(storage)

    assert await _ids(storage, status=JobStatus.COMPLETED) == [done]
    assert await _ids(storage, status=JobStatus.RUNNING) == [running]
    assert await _ids(storage, status=JobStatus.PENDING) == [pending]
    assert await _ids(storage, status=JobStatus.FAILED) == []


async def test_list_jobs_filters_by_type(storage: JobStorage) -> None:
    email_1, report, email_2 = await insert(storage, new_job(EMAIL), new_job(REPORT), new_job())

    assert await _ids(storage, type=EMAIL) == [email_2, email_1]
    assert await _ids(storage, type=REPORT) == [report]
    assert await _ids(storage, type="other") == []


async def test_list_jobs_filters_by_entity(storage: JobStorage) -> None:
    mine = await insert_one(storage, entity_id="customer-1")
    await insert_one(storage, entity_id="customer-2")
    await insert_one(storage)

    assert await _ids(storage, entity_id="customer-1") == [mine]


async def test_list_jobs_filters_dead_letters(storage: JobStorage) -> None:
    dead, alive = await insert(storage, new_job(), new_job(max_retries=3))
    await fail(storage, await claim_one(storage), retryable=False)
    await fail(storage, await claim_one(storage))

    assert await _ids(storage, dead_lettered=True) == [dead]
    assert await _ids(storage, dead_lettered=False) == [alive]


async def test_list_jobs_combines_filters(storage: JobStorage) -> None:
    target = await insert_one(storage, REPORT, entity_id="e")
    await insert_one(storage, EMAIL, entity_id="e")
    await insert_one(storage, REPORT, entity_id="f")

    assert await _ids(storage, type=REPORT, entity_id="e", status=JobStatus.PENDING) == [target]


async def test_paging_with_the_cursor_walks_every_job_once(storage: JobStorage) -> None:
    ids = await insert(storage, *[new_job() for _ in range(7)])

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await _ids(storage, limit=3, cursor=cursor)
        if not page:
            break
        assert len(page) <= 3
        seen += page
        cursor = page[-1]

    assert seen == ids[::-1]


async def test_the_cursor_pages_within_the_filters(storage: JobStorage) -> None:
    jobs = [new_job(EMAIL if i % 2 else REPORT) for i in range(8)]
    ids = await insert(storage, *jobs)
    emails = [job_id for job, job_id in zip(jobs, ids, strict=True) if job.type == EMAIL]

    first = await _ids(storage, type=EMAIL, limit=2)
    second = await _ids(storage, type=EMAIL, limit=2, cursor=first[-1])

    assert first + second == emails[::-1]


async def test_the_cursor_may_be_a_job_the_filter_excludes(storage: JobStorage) -> None:
    older, cursor_job, newer = await insert(storage, new_job(), new_job(REPORT), new_job())

    assert await _ids(storage, type=EMAIL, cursor=cursor_job) == [older]
    assert newer not in await _ids(storage, cursor=cursor_job)


async def test_an_unknown_cursor_yields_an_empty_page(storage: JobStorage) -> None:
    await insert_one(storage)

    assert await _ids(storage, cursor="00000000-0000-0000-0000-000000000000") == []


async def test_a_page_after_the_oldest_job_is_empty(storage: JobStorage) -> None:
    oldest = await insert_one(storage)
    await insert_one(storage)

    assert await _ids(storage, cursor=oldest) == []
