"""`enqueue_sync(..., connection=conn)` on PostgreSQL: the job is written inside the caller's
open transaction on a blocking `psycopg.Connection` (or a Django connection, which wraps one),
committed and rolled back with the application's own write. Also: the twins of a producer
use a clone of the store, never a pool opened on another loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.postgres.conftest import Admin, StoreFactory
from tests.scheduler.conftest import FAST, Payload
from timecrisis import JobContext, JobScheduler, JobStatus, JobValidationError
from timecrisis.storage._common import new_id
from timecrisis.storage.base import NewJob
from timecrisis.storage.postgres import PostgresJobStorage

pytestmark = pytest.mark.postgres

WAIT = 30.0


@pytest.fixture
async def scheduler(make_store: StoreFactory, admin: Admin, schema: str) -> Any:
    scheduler = JobScheduler(make_store(), **FAST)

    @scheduler.job("double", concurrency=None)
    async def double(data: Payload, ctx: JobContext) -> int:
        return data.n * 2

    await admin.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    await admin.execute(
        sql.SQL("CREATE TABLE {}.orders (id text PRIMARY KEY)").format(sql.Identifier(schema))
    )
    yield scheduler
    await scheduler.stop(force=True)
    await asyncio.to_thread(scheduler.close_sync)


def _order(conn: psycopg.Connection[Any], schema: str) -> str:
    order_id = new_id()
    conn.execute(
        sql.SQL("INSERT INTO {}.orders (id) VALUES (%s)").format(sql.Identifier(schema)),
        (order_id,),
    )
    return order_id


class FakeDjangoConnection:
    """What `django.db.connection` looks like to us: a wrapper whose `.connection` is the raw
    psycopg connection once `ensure_connection()` ran (Django is not installed here)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.connection: psycopg.Connection[Any] | None = None
        self.ensured_in: threading.Thread | None = None

    def ensure_connection(self) -> None:
        self.ensured_in = threading.current_thread()
        if self.connection is None:
            self.connection = psycopg.connect(self._dsn)


def _commit_and_rollback(scheduler: JobScheduler, pg_url: str, schema: str) -> tuple[str, str]:
    with psycopg.connect(pg_url) as conn:  # not autocommit: psycopg opens a transaction
        kept_order = _order(conn, schema)
        kept = scheduler.enqueue_sync("double", {"n": 2}, connection=conn)
        conn.commit()
        _order(conn, schema)
        lost = scheduler.enqueue_sync("double", {"n": 3}, connection=conn)
        conn.rollback()
    assert kept_order
    return kept, lost


async def test_committed_and_rolled_back_with_the_callers_transaction(
    scheduler: JobScheduler, pg_url: str, schema: str
) -> None:
    kept, lost = await asyncio.to_thread(_commit_and_rollback, scheduler, pg_url, schema)
    assert (await scheduler.get_job(kept)) is not None
    assert await scheduler.get_job(lost) is None
    async with scheduler:
        done = await scheduler.wait_for_job(kept, timeout=WAIT)
    assert (done.status, done.result) == (JobStatus.COMPLETED, 4)


async def test_inside_an_explicit_transaction_block(
    scheduler: JobScheduler, pg_url: str, schema: str
) -> None:
    def work() -> tuple[str, str]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            with conn.transaction():
                kept = scheduler.enqueue_sync("double", {"n": 1}, connection=conn)
            lost = ""
            try:
                with conn.transaction():
                    lost = scheduler.enqueue_sync("double", {"n": 1}, connection=conn)
                    raise ZeroDivisionError  # the application's own failure
            except ZeroDivisionError:
                pass
            return kept, lost

    kept, lost = await asyncio.to_thread(work)
    assert await scheduler.get_job(kept) is not None
    assert await scheduler.get_job(lost) is None


async def test_a_django_connection_wrapper(scheduler: JobScheduler, pg_url: str) -> None:
    django = FakeDjangoConnection(pg_url)

    def work() -> tuple[str, str]:
        kept = scheduler.enqueue_sync("double", {"n": 5}, connection=django)
        assert django.connection is not None
        django.connection.commit()
        lost = scheduler.enqueue_many_sync("double", [{"n": 6}], connection=django)[0]
        django.connection.rollback()
        django.connection.close()
        return kept, lost

    kept, lost = await asyncio.to_thread(work)
    assert django.ensured_in is not None and django.ensured_in is not threading.main_thread()
    assert await scheduler.get_job(kept) is not None
    assert await scheduler.get_job(lost) is None


async def test_a_bad_payload_leaves_the_callers_transaction_usable(
    scheduler: JobScheduler, pg_url: str, schema: str
) -> None:
    def work() -> str:
        with psycopg.connect(pg_url) as conn:
            order = _order(conn, schema)
            with pytest.raises(JobValidationError):
                scheduler.enqueue_sync("double", {"n": "x"}, connection=conn)
            job_id = scheduler.enqueue_sync("double", {"n": 1}, connection=conn)
            conn.commit()
            assert order
            return job_id

    job_id = await asyncio.to_thread(work)
    assert await scheduler.get_job(job_id) is not None


async def test_the_sync_connection_works_while_the_scheduler_runs(
    scheduler: JobScheduler, pg_url: str
) -> None:
    async with scheduler:

        def work() -> str:
            with psycopg.connect(pg_url) as conn:
                job_id = scheduler.enqueue_sync("double", {"n": 8}, connection=conn)
                conn.commit()
                return job_id

        job_id = await asyncio.to_thread(work)
        done = await scheduler.wait_for_job(job_id, timeout=WAIT)
    assert done.result == 16


async def test_the_store_inserts_on_a_blocking_connection(
    make_store: StoreFactory, pg_url: str
) -> None:
    store: PostgresJobStorage = make_store()
    await store.init()
    job = NewJob(id=new_id(), type="t", data={}, unique_key="k")

    def work() -> tuple[bool, bool, str]:
        with psycopg.connect(pg_url) as conn:
            [first] = store.insert_jobs_sync([job], connection=conn)
            # The unique key is held inside this transaction: the second insert names it.
            [second] = store.insert_jobs_sync(
                [NewJob(id=new_id(), type="t", data={}, unique_key="k")], connection=conn
            )
            conn.commit()
            return first.created, second.created, second.id

    first, second, holder = await asyncio.to_thread(work)
    assert (first, second, holder) == (True, False, job.id)


async def test_producer_twins_use_a_clone_not_a_pool_of_another_loop(
    scheduler: JobScheduler,
) -> None:
    # The store is opened on this (pytest's) loop first...
    first = await scheduler.enqueue("double", {"n": 1})
    # ...then the twins, from threads: they must not touch that loop's pool.
    second = await asyncio.to_thread(scheduler.enqueue_sync, "double", {"n": 2})
    assert scheduler._sync_delegate is not None
    assert scheduler._sync_delegate.storage is not scheduler.storage
    assert await asyncio.to_thread(scheduler.get_job_sync, first) is not None
    assert await scheduler.get_job(second) is not None
