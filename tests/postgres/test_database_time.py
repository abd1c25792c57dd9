"""Database time: with no clock injected, every lease, lock and due time follows the database's
`now()`, whatever the node's own clock says. The test never reads the Python clock to decide
anything: it compares the store's results with the server's `now()`, and puts due times a few
minutes ahead of the server (a node whose clock ran minutes ahead would wrongly find them due)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.postgres.conftest import Admin, StoreFactory
from timecrisis.clock import ManualClock
from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimParams, NewJob

pytestmark = pytest.mark.postgres

TTL = timedelta(seconds=45)


async def _db_now(admin: Admin) -> datetime:
    cur = await admin.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def _claim(limit: int = 10) -> ClaimParams:
    return ClaimParams(worker="w", limit=limit, lease_ttl=TTL, type_limits={"t": None})


async def test_the_stores_now_is_the_databases_now(make_store: StoreFactory, admin: Admin) -> None:
    store = make_store()
    before = await _db_now(admin)
    now = await store.now()
    after = await _db_now(admin)

    assert before <= now <= after


async def test_a_lease_ends_ttl_after_the_databases_now(
    make_store: StoreFactory, admin: Admin
) -> None:
    store = make_store()
    await store.insert_jobs([NewJob(id=new_id(), type="t", data={})])
    before = await _db_now(admin)
    [claimed] = await store.claim_jobs(_claim())
    after = await _db_now(admin)

    assert before + TTL <= claimed.lease_expires_at <= after + TTL
    assert claimed.job.started_at is not None
    assert before <= claimed.job.started_at <= after


async def test_a_job_due_minutes_ahead_of_the_database_is_not_claimable(
    make_store: StoreFactory, admin: Admin
) -> None:
    store = make_store()
    db_now = await _db_now(admin)
    await store.insert_jobs(
        [
            NewJob(id=new_id(), type="t", data={}, run_at=db_now + timedelta(minutes=2)),
            NewJob(id=new_id(), type="t", data={}, delay=timedelta(minutes=2)),
        ]
    )

    assert await store.claim_jobs(_claim()) == []


async def test_a_node_whose_clock_runs_minutes_ahead_is_not_trusted(
    make_store: StoreFactory, admin: Admin
) -> None:
    # The same jobs, seen through a store whose injected clock runs five minutes ahead of the
    # database: it would claim them. The default store, on the same rows, does not.
    db_now = await _db_now(admin)
    skewed = make_store(clock=ManualClock(db_now + timedelta(minutes=5)))
    honest = make_store()
    await honest.insert_jobs(
        [NewJob(id=new_id(), type="t", data={}, run_at=db_now + timedelta(minutes=2))]
    )

    assert await honest.claim_jobs(_claim()) == []
    assert len(await skewed.claim_jobs(_claim())) == 1


async def test_a_delay_counts_from_the_databases_now(
    make_store: StoreFactory, admin: Admin
) -> None:
    store = make_store()
    before = await _db_now(admin)
    [result] = await store.insert_jobs(
        [
            NewJob(
                id=new_id(),
                type="t",
                data={},
                delay=timedelta(minutes=3),
                expires_in=timedelta(hours=1),
            )
        ]
    )
    after = await _db_now(admin)
    job = await store.get_job(result.id)

    assert job is not None and job.expires_at is not None
    assert before + timedelta(minutes=3) <= job.run_at <= after + timedelta(minutes=3)
    assert before + timedelta(hours=1) <= job.expires_at <= after + timedelta(hours=1)


async def test_a_lease_that_has_not_expired_by_database_time_is_not_recovered(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.insert_jobs([NewJob(id=new_id(), type="t", data={})])
    [claimed] = await store.claim_jobs(_claim())

    assert await store.recover_expired_leases() == []
    job = await store.get_job(claimed.job.id)
    assert job is not None and job.status == "running"


async def test_locks_expire_by_database_time(make_store: StoreFactory) -> None:
    store = make_store()
    token = await store.acquire_lock("leader", "node-a", timedelta(minutes=1))
    assert token is not None

    assert await store.acquire_lock("leader", "node-b", timedelta(minutes=1)) is None
    info = await store.get_lock("leader")
    assert info is not None
    assert info.expires_at - info.acquired_at == timedelta(minutes=1)
    assert await store.renew_lock("leader", token, timedelta(minutes=1))
