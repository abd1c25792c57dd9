"""Claims on PostgreSQL across many connections: the per-type limit holds under concurrent
claimers (checked inside the database after every step), claimers never share a job, and the
claim scan stays on the partial pending index however much history piles up."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta

import pytest
from psycopg import AsyncClientCursor, sql

from tests.postgres.conftest import Admin, StoreFactory
from timecrisis.storage._common import new_id
from timecrisis.storage.base import ClaimedJob, ClaimParams, Completion, NewJob
from timecrisis.storage.postgres import PostgresJobStorage

pytestmark = pytest.mark.postgres

LIMITED, FREE = "limited", "free"
LEASE = timedelta(minutes=5)


def _jobs(job_type: str, count: int) -> list[NewJob]:
    return [NewJob(id=new_id(), type=job_type, data={"n": n}) for n in range(count)]


def _params(worker: str, limit: int = 3) -> ClaimParams:
    return ClaimParams(
        worker=worker, limit=limit, lease_ttl=LEASE, type_limits={LIMITED: 2, FREE: None}
    )


async def _running(admin: Admin, schema: str, job_type: str) -> int:
    cur = await admin.execute(
        sql.SQL("SELECT count(*) FROM {}.jobs WHERE type = %s AND status = 'running'").format(
            sql.Identifier(schema)
        ),
        (job_type,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _complete(store: PostgresJobStorage, claimed: list[ClaimedJob]) -> None:
    finished = await store.complete_jobs([Completion(c.ref) for c in claimed])
    assert None not in finished


async def test_a_type_limit_of_two_holds_when_eight_nodes_claim_at_once(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    stores = [make_store(max_pool_size=2) for _ in range(8)]
    await stores[0].insert_jobs(_jobs(LIMITED, 30) + _jobs(FREE, 30))

    limited_done = 0
    for _ in range(15):
        batches = await asyncio.gather(
            *(s.claim_jobs(_params(f"node-{i}")) for i, s in enumerate(stores))
        )
        running = await _running(admin, schema, LIMITED)
        claimed_limited = sum(c.job.type == LIMITED for batch in batches for c in batch)
        assert running <= 2
        # Never over-conservative either: with a backlog, the type's two slots are filled.
        assert claimed_limited == running == min(2, 30 - limited_done)
        limited_done += claimed_limited
        await asyncio.gather(*(_complete(s, b) for s, b in zip(stores, batches, strict=True)))
    assert limited_done == 30


async def test_a_type_limit_holds_while_claims_and_completions_interleave(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    stores = [make_store(max_pool_size=2) for _ in range(8)]
    await stores[0].insert_jobs(_jobs(LIMITED, 40) + _jobs(FREE, 40))
    observed: list[int] = []

    async def node(index: int, store: PostgresJobStorage) -> int:
        done = 0
        while batch := await store.claim_jobs(_params(f"node-{index}", limit=2)):
            observed.append(await _running(admin, schema, LIMITED))
            await asyncio.sleep(0)
            await _complete(store, batch)
            done += len(batch)
        return done

    totals = await asyncio.gather(*(node(i, s) for i, s in enumerate(stores)))

    assert sum(totals) == 80
    assert observed and max(observed) <= 2


async def test_claimers_on_separate_connections_never_share_a_job(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    stores = [make_store(max_pool_size=2) for _ in range(8)]
    batch = _jobs(FREE, 300)
    inserted = {j.id for j in batch}
    await stores[0].insert_jobs(batch)

    async def drain(index: int, store: PostgresJobStorage) -> list[str]:
        mine: list[str] = []
        while claimed := await store.claim_jobs(_params(f"node-{index}", limit=7)):
            mine += [c.job.id for c in claimed]
            await _complete(store, claimed)
        return mine

    groups = await asyncio.gather(*(drain(i, s) for i, s in enumerate(stores)))

    for first, second in itertools.combinations(groups, 2):
        assert not set(first) & set(second)
    assert sorted(itertools.chain(*groups)) == sorted(inserted)
    cur = await admin.execute(
        sql.SQL(
            "SELECT count(*), count(DISTINCT job_id) FROM {}.job_runs WHERE status = 'completed'"
        ).format(sql.Identifier(schema))
    )
    assert await cur.fetchone() == (300, 300)


async def test_the_claim_scans_the_partial_pending_index_not_the_history(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()
    await store.init()
    s = sql.Identifier(schema)
    # 20,000 finished jobs of the same type, and a few pending ones.
    await admin.execute(
        sql.SQL(
            "INSERT INTO {}.jobs (id, type, data, status, priority, max_retries, "
            "backoff_strategy, retry_delay, max_retry_delay, run_at, created_at, finished_at) "
            "SELECT 'old-' || g, %s, '{{}}', 'completed', 1, 0, 'linear', 1, 1, now(), now(), "
            "now() FROM generate_series(1, 20000) AS g"
        ).format(s),
        (FREE,),
    )
    await store.insert_jobs(_jobs(FREE, 5))
    await admin.execute(sql.SQL("ANALYZE {}.jobs").format(s))

    query = store._ctx.queries["claim_jobs"]
    params = {
        "now": None,
        "limit": 10,
        "types": [FREE],
        "caps": [None],
        "worker": "w",
        "ttl": LEASE,
        "key_caps": [None],
        "rate_types": [],
        "rate_caps": [],
        "rate_windows": [],
    }
    async with AsyncClientCursor(admin) as cur:
        await cur.execute(b"EXPLAIN " + query, params)
        plan = "\n".join(row[0] for row in await cur.fetchall())

    assert "jobs_pending_queue" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan


async def test_run_ids_made_in_sql_are_distinct_time_ordered_version_7_uuids(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.insert_jobs(_jobs(FREE, 20))
    first = await store.claim_jobs(_params("w", limit=10))
    await asyncio.sleep(0.01)  # the next statement is at least a millisecond later
    second = await store.claim_jobs(_params("w", limit=10))
    run_ids = [c.ref.run_id for c in first + second]

    assert len(set(run_ids)) == 20
    for run_id in run_ids:
        parsed = uuid.UUID(run_id)
        assert (str(parsed), parsed.version, parsed.variant) == (run_id, 7, uuid.RFC_4122)
    # Time-ordered between statements (within one they share the millisecond prefix), so
    # job_runs' primary key grows at its right edge, as ids made by `new_id` do.
    assert max(r[:13] for r in run_ids[:10]) < min(r[:13] for r in run_ids[10:])
    milliseconds = uuid.UUID(run_ids[0]).int >> 80, uuid.UUID(new_id()).int >> 80
    assert abs(milliseconds[0] - milliseconds[1]) < 60_000  # the clock, as new_id reads it
