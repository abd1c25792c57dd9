"""Jobs delayed into the future cost a claim nothing (migration 0011, docs/architecture.md
"Delayed jobs").

A claim walks each type's pending jobs in claim order. A job delayed days ahead (a reminder, a
retry's backoff, a snooze) sat in that order ahead of the due jobs enqueued after it, so every
claim fetched it to read its run_at: with 100,000 of them, about 25 ms a claim instead of 1, on
every poll of every worker. They are now flagged `waiting` and kept out of the queue indexes until a
claim promotes them, when due. These tests count the rows the claim statements read, check that
every path that makes a job pending sets the flag, and that a promotion keeps claim order."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.postgres.conftest import Admin, StoreFactory
from tests.postgres.test_paused_backlog import BACKLOG, _rows_read, executed_plan, fill_backlog
from tests.storage.factories import START, claim, claim_one, claim_params, fail, seconds
from timecrisis.clock import ManualClock
from timecrisis.storage._common import new_id
from timecrisis.storage.base import Completion, Failure, NewJob
from timecrisis.storage.postgres import PostgresJobStorage
from timecrisis.storage.postgres._sql import Queries

pytestmark = pytest.mark.postgres


async def _waiting(admin: Admin, schema: str, job_id: str) -> bool:
    cur = await admin.execute(f'SELECT waiting FROM "{schema}".jobs WHERE id = %s', (job_id,))
    row = await cur.fetchone()
    assert row is not None, job_id
    return bool(row[0])


@pytest.mark.parametrize("statement", ["claim_jobs", "claim_jobs_unlimited", "complete_and_claim"])
async def test_a_claim_never_reads_the_jobs_delayed_ahead_of_the_due_ones(
    make_store: StoreFactory, admin: Admin, schema: str, statement: str
) -> None:
    store = make_store()
    # The delayed jobs are ahead of the due ones in claim order: higher priority, enqueued
    # first (batches of 5,000: the COPY path sets the flag too).
    await fill_backlog(store, priority=5, delay=timedelta(days=3))
    await store.insert_jobs([NewJob(id=new_id(), type="big", data={}) for _ in range(3)])
    await admin.execute(f'ANALYZE "{schema}".jobs')

    # As the claim connections run them: planned once, for any clock, so the planner guesses
    # that a third of the delayed jobs may be due.
    document = await executed_plan(admin, schema, statement, generic=True)
    plan = document[0]["Plan"]

    assert plan["Actual Rows"] == 3, document  # the due jobs, none of the delayed ones
    assert _rows_read(plan) < 100, json.dumps(document, indent=1)


async def test_every_way_into_pending_sets_the_flag_by_run_at(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    clock = ManualClock(START)
    store = make_store(clock=clock)

    async def flag(job_id: str) -> bool:
        return await _waiting(admin, schema, job_id)

    # Enqueues: one job, a batch (one statement), a large batch (COPY), each due or delayed.
    [due] = [r.id for r in await store.insert_jobs([NewJob(id=new_id(), type="t", data={})])]
    [delayed] = [
        r.id
        for r in await store.insert_jobs(
            [NewJob(id=new_id(), type="t", data={}, delay=seconds(60))]
        )
    ]
    [at] = [
        r.id
        for r in await store.insert_jobs(
            [NewJob(id=new_id(), type="t", data={}, run_at=START + seconds(5))]
        )
    ]
    batch = await store.insert_jobs(
        [NewJob(id=new_id(), type="t", data={}, delay=seconds(i % 2 * 60)) for i in range(4)]
    )
    copied = await store.insert_jobs(
        [NewJob(id=new_id(), type="t", data={}, delay=seconds(i % 2 * 60)) for i in range(200)]
    )
    assert (await flag(due), await flag(delayed), await flag(at)) == (False, True, True)
    assert [await flag(r.id) for r in batch] == [False, True] * 2
    assert [await flag(r.id) for r in copied[:4]] == [False, True] * 2

    # A retry's backoff waits; a retry due at once does not.
    backing_off = await store.insert_jobs(
        [NewJob(id=new_id(), type="backoff", data={}, retry_delay=30.0, max_retries=3)]
    )
    claimed = await claim_one(store, types={"backoff": None})
    assert claimed.job.id == backing_off[0].id
    outcome = await fail(store, claimed)
    assert outcome.will_retry and await flag(claimed.job.id)

    await store.insert_jobs([NewJob(id=new_id(), type="now", data={}, max_retries=3)])
    claimed = await claim_one(store, types={"now": None})
    at_once = await store.fail_job(Failure(claimed.ref, "Boom: now", retry_in=timedelta(0)))
    assert at_once is not None and at_once.will_retry and not await flag(claimed.job.id)

    # A snooze into the future waits; a release never does.
    await store.insert_jobs([NewJob(id=new_id(), type="snooze", data={})])
    snoozed = await claim_one(store, types={"snooze": None})
    assert await store.snooze_job(snoozed.ref, seconds(30)) is not None
    assert await flag(snoozed.job.id)
    await store.insert_jobs([NewJob(id=new_id(), type="release", data={})])
    released = await claim_one(store, types={"release": None})
    assert await store.release_jobs([released.ref]) == [True]
    assert not await flag(released.job.id)

    # Due now: the next claim promotes them all, whatever their type.
    clock.advance(seconds(61))
    await claim(store, types={"nothing": None})
    cur = await admin.execute(f'SELECT count(*) FROM "{schema}".jobs WHERE waiting')
    assert await cur.fetchone() == (0,)


async def test_a_retried_job_waits_out_of_the_queue_until_retry_job_brings_it_back(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()
    [job] = await store.insert_jobs(
        [NewJob(id=new_id(), type="t", data={}, delay=timedelta(days=1))]
    )
    assert await store.cancel_job(job.id) is not None
    assert await _waiting(admin, schema, job.id)  # ended while waiting: kept until due
    assert await store.retry_job(job.id)
    assert not await _waiting(admin, schema, job.id)
    assert [c.job.id for c in await claim(store, types={"t": None})] == [job.id]


@pytest.mark.parametrize("combined", [False, True], ids=["claim", "complete_and_claim"])
@pytest.mark.parametrize("limited", [False, True], ids=["unlimited", "limited"])
async def test_jobs_that_came_due_are_claimed_in_order_by_the_same_call(
    make_store: StoreFactory, combined: bool, limited: bool
) -> None:
    """The claim statement that finds delayed jobs due claims nothing; the store promotes them
    and claims again at once, so the caller still gets the due jobs in claim order from one
    call."""
    clock = ManualClock(START)
    store: PostgresJobStorage = make_store(clock=clock)
    first = await store.insert_jobs(
        [NewJob(id=new_id(), type="t", data={}, delay=seconds(10)) for _ in range(2)]
    )
    later = await store.insert_jobs([NewJob(id=new_id(), type="t", data={}) for _ in range(2)])
    await store.insert_jobs([NewJob(id=new_id(), type="u", data={})])
    running = await claim_one(store, types={"u": None})
    clock.advance(seconds(11))

    params = claim_params(types={"t": 10 if limited else None}, limit=3)
    if combined:
        finished, claimed = await store.complete_and_claim([Completion(running.ref, None)], params)
        assert finished[0] is not None
    else:
        claimed = await store.claim_jobs(params)
    assert [c.job.id for c in claimed] == [r.id for r in first] + [later[0].id]


async def test_a_due_job_held_by_another_transaction_never_stops_the_claims(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    """A claim that saw a due waiting job it cannot promote (another transaction holds its
    row: a cancel in flight, another claim's promotion) would claim nothing, every time, until
    that transaction ended: such a row is passed over, as claims pass over locked rows."""
    clock = ManualClock(START)
    store = make_store(clock=clock)
    [held] = await store.insert_jobs(
        [NewJob(id=new_id(), type="t", data={}, priority=9, delay=seconds(10))]
    )
    due = await store.insert_jobs([NewJob(id=new_id(), type="t", data={}) for _ in range(2)])
    clock.advance(seconds(11))

    await admin.execute("BEGIN")
    try:
        await admin.execute(f'SELECT 1 FROM "{schema}".jobs WHERE id = %s FOR UPDATE', (held.id,))
        assert [c.job.id for c in await claim(store, types={"t": None})] == [r.id for r in due]
    finally:
        await admin.execute("ROLLBACK")
    assert [c.job.id for c in await claim(store, types={"t": None})] == [held.id]


async def test_promoting_the_due_jobs_reads_only_them(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    clock = ManualClock(START)
    store = make_store(clock=clock)
    await fill_backlog(store, delay=timedelta(days=3))
    await store.insert_jobs(
        [NewJob(id=new_id(), type="big", data={}, delay=seconds(5)) for _ in range(3)]
    )
    await admin.execute(f'ANALYZE "{schema}".jobs')

    cur = await admin.execute(
        b"EXPLAIN (ANALYZE, FORMAT JSON) "
        + Queries(schema)["promote_due"].replace(b"%(now)s", b"%s"),
        (START + seconds(6),),
    )
    row = await cur.fetchone()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    plan = document[0]["Plan"]
    assert _rows_read(plan) < 100, json.dumps(document, indent=1)
    waiting = await admin.execute(f'SELECT count(*) FROM "{schema}".jobs WHERE waiting')
    assert await waiting.fetchone() == (BACKLOG,)  # the three due ones promoted
