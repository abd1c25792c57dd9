"""An attempt's run row is written once, when the attempt ends (migration 0010): while it runs,
the job row is its run. What the stores return is pinned by the conformance suite
(tests/storage); this pins the PostgreSQL side of it: what job_runs holds, and the running run
rows left by a node older than migration 0010."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from psycopg import sql

from tests.postgres.conftest import Admin, StoreFactory
from timecrisis.models import FailureKind, RunStatus
from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimedJob, ClaimParams, Completion, NewJob
from timecrisis.storage.postgres import PostgresJobStorage

pytestmark = pytest.mark.postgres

TYPE = "work"


def _params(lease: timedelta = timedelta(minutes=5), limit: int = 2) -> ClaimParams:
    return ClaimParams(worker="w", limit=limit, lease_ttl=lease, type_limits={TYPE: None})


async def _rows(admin: Admin, schema: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    cur = await admin.execute(sql.SQL(query).format(sql.Identifier(schema)), args)
    return await cur.fetchall()


async def _claim(store: PostgresJobStorage, count: int) -> list[ClaimedJob]:
    await store.insert_jobs([NewJob(id=new_id(), type=TYPE, data={}) for _ in range(count)])
    return await store.claim_jobs(_params(limit=count))


async def test_a_claim_writes_no_run_row_and_each_end_writes_one(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()
    first, second = await _claim(store, 2)

    assert await _rows(admin, schema, "SELECT id FROM {}.job_runs") == []
    [running] = await store.get_job_runs(first.job.id)
    assert (running.id, running.status) == (first.ref.run_id, RunStatus.RUNNING)

    await store.complete_and_claim([Completion(first.ref)], _params())
    await store.release_jobs([second.ref])

    rows = await _rows(admin, schema, "SELECT id, status FROM {}.job_runs ORDER BY seq")
    assert rows == [(first.ref.run_id, "completed"), (second.ref.run_id, "released")]


async def test_a_stale_token_writes_no_run_row(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()
    [claimed] = await _claim(store, 1)
    await store.complete_jobs([Completion(claimed.ref)])

    assert await store.complete_jobs([Completion(claimed.ref)]) == [None]
    assert await store.release_jobs([claimed.ref]) == [False]
    assert await store.snooze_job(claimed.ref, timedelta(seconds=1)) is None

    assert await _rows(admin, schema, "SELECT status FROM {}.job_runs") == [("completed",)]


async def _as_before_0010(admin: Admin, schema: str, claimed: ClaimedJob, progress: float) -> None:
    """The running run row a node older than migration 0010 inserted at its claim (and its
    progress, which that node's `update_progress` wrote there, not in jobs.run_progress)."""
    await _rows(
        admin,
        schema,
        "INSERT INTO {}.job_runs (id, job_id, job_type, attempt, status, worker, started_at,"
        " progress) SELECT run_id, id, type, attempts, 'running', worker, started_at, %s"
        " FROM {}.jobs WHERE id = %s RETURNING id".replace("{}", "{0}"),
        progress,
        claimed.job.id,
    )


async def test_a_running_row_from_before_0010_is_listed_and_counted_once(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()
    [claimed] = await _claim(store, 1)
    await _as_before_0010(admin, schema, claimed, 30)

    [run] = await store.get_job_runs(claimed.job.id)
    assert (run.id, run.status, run.progress) == (claimed.ref.run_id, RunStatus.RUNNING, 30)
    [stats] = await store.get_run_stats()
    assert (stats.status, stats.runs) == (RunStatus.RUNNING, 1)


async def test_a_recovered_lease_closes_a_running_row_from_before_0010(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()
    await store.insert_jobs([NewJob(id=new_id(), type=TYPE, data={}, max_retries=0)])
    [claimed] = await store.claim_jobs(_params(lease=timedelta(milliseconds=1)))
    await _as_before_0010(admin, schema, claimed, 30)
    await _rows(
        admin, schema, "UPDATE {}.jobs SET lock_expires_at = now() - interval '1 s' RETURNING id"
    )

    [outcome] = await store.recover_expired_leases()

    assert outcome.job.id == claimed.job.id
    [run] = await store.get_job_runs(claimed.job.id)
    assert (run.id, run.status, run.failure_kind, run.progress) == (
        claimed.ref.run_id,
        RunStatus.FAILED,
        FailureKind.LEASE_EXPIRED,
        30,
    )
    assert run.finished_at is not None and run.duration is not None
    [stats] = await store.get_run_stats()  # the closed row is counted once, running no more
    assert (stats.status, stats.runs, stats.lease_losses) == (RunStatus.FAILED, 1, 1)
