"""Large batches (`enqueue_many`): the PostgreSQL store streams them with COPY inside one
transaction (`_jobs.copy_jobs`). They must read back exactly as the one-statement insert writes
them, resolve relative times against the database's clock, wake listeners, and stay atomic.
The store-neutral half is in tests/storage/test_jobs.py ("large batches")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.postgres.conftest import Admin, StoreFactory
from timecrisis.clock import ManualClock
from timecrisis.errors import StorageError
from timecrisis.storage._common import new_id
from timecrisis.storage.base import JobQuery, NewJob, capabilities_of, streamed_insert
from timecrisis.storage.postgres import _jobs

pytestmark = pytest.mark.postgres

LARGE = 2 * _jobs.COPY_MIN_BATCH  # takes the COPY path
GUARD_SECONDS = 10  # a hang guard only: a NOTIFY arrives in milliseconds


def _job(**fields: object) -> NewJob:
    return NewJob(id=new_id(), type="t", data={}, **fields)  # type: ignore[arg-type]


async def _db_now(admin: Admin) -> datetime:
    cur = await admin.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def test_a_large_batch_takes_the_copy_path_and_a_small_or_keyed_one_does_not() -> None:
    assert _jobs.can_copy([_job() for _ in range(LARGE)])
    assert not _jobs.can_copy([_job() for _ in range(_jobs.COPY_MIN_BATCH - 1)])
    assert not _jobs.can_copy([_job() for _ in range(LARGE - 1)] + [_job(unique_key="k")])


async def test_a_large_batch_resolves_its_times_against_the_databases_clock(
    make_store: StoreFactory, admin: Admin
) -> None:
    store = make_store()
    await store.init()
    delay = timedelta(minutes=7)
    before = await _db_now(admin)
    results = await store.insert_jobs(
        [_job(delay=delay, expires_in=timedelta(hours=1)) for _ in range(LARGE)]
    )
    after = await _db_now(admin)

    jobs = [await store.get_job(r.id) for r in results]
    created = {job.created_at for job in jobs if job is not None}
    assert len(created) == 1  # one transaction, one now()
    [created_at] = created
    assert before <= created_at <= after
    assert all(job is not None and job.run_at == created_at + delay for job in jobs)
    assert all(
        job is not None and job.expires_at == created_at + timedelta(hours=1) for job in jobs
    )


@pytest.mark.parametrize("size", [1, 2, LARGE], ids=["one", "statement", "copy"])
async def test_a_delay_in_days_is_elapsed_time_whatever_the_sessions_time_zone(
    make_store: StoreFactory, pg_url: str, size: int
) -> None:
    # 2025-03-30 02:00 in Paris is the spring-forward gap: one calendar day after noon on the
    # 29th is 23 hours later there. Every store adds 24 hours, as Python's timedelta does.
    now = datetime(2025, 3, 29, 12, 0, tzinfo=UTC)
    sep = "&" if "?" in pg_url else "?"
    store = make_store(f"{pg_url}{sep}options=-c%20TimeZone%3DEurope/Paris", clock=ManualClock(now))

    results = await store.insert_jobs(
        [_job(delay=timedelta(days=1), expires_in=timedelta(days=2)) for _ in range(size)]
    )

    for result in results:
        job = await store.get_job(result.id)
        assert job is not None
        assert job.run_at == now + timedelta(hours=24)
        assert job.expires_at == now + timedelta(hours=48)


async def test_a_large_batch_wakes_a_listener_on_another_store(make_store: StoreFactory) -> None:
    producer, worker = make_store(), make_store()
    await producer.init()
    woken = asyncio.Event()
    worker.add_wakeup_listener(woken.set)
    await asyncio.wait_for(worker.wait_for_listener(), GUARD_SECONDS)
    await asyncio.wait_for(woken.wait(), GUARD_SECONDS)  # every (re)connect sends one
    woken.clear()

    await producer.insert_jobs([_job() for _ in range(LARGE)])

    await asyncio.wait_for(woken.wait(), GUARD_SECONDS)


async def test_a_large_batch_is_numbered_in_input_order(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()
    jobs = [_job(priority=i % 3) for i in range(LARGE)]

    await store.insert_jobs(jobs)

    cur = await admin.execute(f'SELECT id FROM "{schema}".jobs ORDER BY seq')
    assert [row[0] for row in await cur.fetchall()] == [job.id for job in jobs]
    assert len(await store.list_jobs(JobQuery(limit=LARGE))) == LARGE


# ---- streamed: `insert_job_stream` consumes its jobs while the COPY runs --------------------


class Refused(Exception):
    pass


def _stream(jobs: list[NewJob], fail_at: int | None = None) -> Iterator[NewJob]:
    for i, job in enumerate(jobs):
        if i == fail_at:
            raise Refused(f"job {i}")
        yield job


def test_the_store_declares_streamed_inserts(make_store: StoreFactory) -> None:
    store = make_store()
    assert capabilities_of(store).streamed_insert
    assert streamed_insert(store) is not None


@pytest.mark.parametrize("size", [2, LARGE], ids=["statement", "copy"])
async def test_a_stream_inserts_every_job_in_order(make_store: StoreFactory, size: int) -> None:
    store = make_store()
    jobs = [_job(priority=i % 5) for i in range(size)]

    results = await store.insert_job_stream(size, _stream(jobs))

    assert [(r.id, r.created) for r in results] == [(job.id, True) for job in jobs]
    listed = await store.list_jobs(JobQuery(limit=size))
    assert [job.id for job in listed] == [job.id for job in reversed(jobs)]


@pytest.mark.parametrize("fail_at", [0, 150, LARGE - 1])
async def test_a_stream_that_raises_stores_nothing(make_store: StoreFactory, fail_at: int) -> None:
    store = make_store()
    jobs = [_job() for _ in range(LARGE)]

    with pytest.raises(Refused, match=f"job {fail_at}"):
        await store.insert_job_stream(LARGE, _stream(jobs, fail_at))

    assert await store.list_jobs(JobQuery()) == []
    # The connection went back to the pool usable: the next insert works.
    assert [r.created for r in await store.insert_job_stream(LARGE, _stream(jobs))] == [
        True
    ] * LARGE


async def test_a_stream_repeating_an_id_or_holding_a_key_stores_nothing(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    jobs = [_job() for _ in range(LARGE)]

    with pytest.raises(StorageError, match="repeats an id"):
        await store.insert_job_stream(LARGE + 1, _stream([*jobs, jobs[3]]))
    with pytest.raises(ValueError, match="unique key"):
        await store.insert_job_stream(LARGE + 1, _stream([*jobs, _job(unique_key="k")]))

    assert await store.list_jobs(JobQuery()) == []
