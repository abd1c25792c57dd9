"""Lost connections: after `pg_terminate_backend` kills every connection of a store's pool,
reads still succeed (retried once on a fresh connection), a write fails at most once with a
`StorageError` and the next one succeeds, and jobs that were running when it happened complete
exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest

from tests.postgres.conftest import Admin, StoreFactory, terminate_backends
from timecrisis.errors import StorageError
from timecrisis.models import JobStatus, RunStatus
from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimParams, Completion, JobQuery, NewJob
from timecrisis.storage.postgres import PostgresJobStorage

pytestmark = pytest.mark.postgres


def _jobs(count: int) -> list[NewJob]:
    return [NewJob(id=new_id(), type="t", data={"n": n}) for n in range(count)]


async def _store_with_a_full_pool(make_store: StoreFactory, dsn: str) -> PostgresJobStorage:
    store = make_store(dsn, min_pool_size=3, max_pool_size=3)
    await store.init()  # a pool the store owns waits for its min_size connections
    await asyncio.gather(*(store.list_jobs(JobQuery(limit=1)) for _ in range(3)))
    return store


async def test_reads_survive_killed_pool_connections(
    make_store: StoreFactory, admin: Admin, tagged_dsn: str
) -> None:
    store = await _store_with_a_full_pool(make_store, tagged_dsn)
    [result] = await store.insert_jobs(_jobs(1))
    application = psycopg.conninfo.conninfo_to_dict(tagged_dsn)["application_name"]
    assert isinstance(application, str)

    assert await terminate_backends(admin, application) == 3

    assert await store.get_job(result.id) is not None
    assert len(await store.list_jobs(JobQuery())) == 1
    assert (await store.get_metrics()).pending == 1


async def test_a_write_after_killed_connections_fails_at_most_once(
    make_store: StoreFactory, admin: Admin, tagged_dsn: str
) -> None:
    store = await _store_with_a_full_pool(make_store, tagged_dsn)
    application = psycopg.conninfo.conninfo_to_dict(tagged_dsn)["application_name"]
    assert isinstance(application, str)
    assert await terminate_backends(admin, application) == 3

    errors: list[StorageError] = []
    for _ in range(2):
        try:
            await store.insert_jobs(_jobs(1))
            break
        except StorageError as exc:
            errors.append(exc)
    else:
        pytest.fail("the store did not recover after one failed write")

    assert len(errors) <= 1
    assert all(isinstance(e.__cause__, psycopg.OperationalError) for e in errors)
    await store.insert_jobs(_jobs(5))  # and it keeps working
    assert (await store.get_metrics()).pending == 6  # the failed write inserted nothing


async def test_jobs_running_when_connections_die_complete_exactly_once(
    make_store: StoreFactory, admin: Admin, tagged_dsn: str
) -> None:
    store = await _store_with_a_full_pool(make_store, tagged_dsn)
    await store.insert_jobs(_jobs(5))
    claimed = await store.claim_jobs(
        ClaimParams(worker="w", limit=5, lease_ttl=timedelta(minutes=1), type_limits={"t": None})
    )
    application = psycopg.conninfo.conninfo_to_dict(tagged_dsn)["application_name"]
    assert isinstance(application, str)
    await terminate_backends(admin, application)

    completions = [Completion(c.ref, result="ok") for c in claimed]
    try:
        finished = await store.complete_jobs(completions)
    except StorageError:  # the worker's completer retries, as the scheduler does
        finished = await store.complete_jobs(completions)

    assert None not in finished
    for c in claimed:
        job = await store.get_job(c.job.id)
        runs = await store.get_job_runs(c.job.id)
        assert job is not None and job.status == JobStatus.COMPLETED
        assert [r.status for r in runs] == [RunStatus.COMPLETED]
    # A repeat of the same completion is refused: the job completed once.
    assert await store.complete_jobs(completions) == [None] * 5
