"""A paused queue's backlog costs the claims of every other queue nothing (docs/flow-control.md).

A worker of every queue (the default) walks each type's pending jobs in claim order. While a
queue is paused, that walk stepped over the paused queue's jobs one by one: with 20,000 of them
at the head of their type, every claim read 20,000 rows (100 ms on PostgreSQL), for every worker,
on every poll and every wake-up, for as long as the pause lasted. These tests run the claim
statements under EXPLAIN ANALYZE and count the rows they read from `jobs`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.postgres.conftest import Admin, StoreFactory
from tests.postgres.test_generic_plans import _prepare
from timecrisis.storage._common import new_id
from timecrisis.storage.base import NewJob
from timecrisis.storage.postgres import PostgresJobStorage
from timecrisis.storage.postgres._sql import Queries

pytestmark = pytest.mark.postgres

BACKLOG = 20_000


async def fill_backlog(store: PostgresJobStorage, **fields: Any) -> None:
    """`BACKLOG` jobs of type "big" with `fields`, in batches of 5,000 (so through the COPY)."""
    for _ in range(BACKLOG // 5_000):
        await store.insert_jobs(
            [NewJob(id=new_id(), type="big", data={}, **fields) for _ in range(5_000)]
        )


def _rows_read(node: dict[str, Any]) -> int:
    """Rows every scan of `jobs` in this plan produced or filtered out, over all its loops."""
    read = 0
    if node.get("Relation Name") == "jobs":
        loops = int(node.get("Actual Loops", 1))
        produced = float(node.get("Actual Rows", 0)) + float(node.get("Rows Removed by Filter", 0))
        read += round(produced * loops)
    for child in node.get("Plans", []):
        read += _rows_read(child)
    return read


async def executed_plan(
    admin: Admin, schema: str, statement: str, *, generic: bool = False
) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE of a claim statement of every queue, without flow control's limits, in a
    transaction rolled back afterwards (the claim's writes undone); with `generic`, planned as
    the claim connections plan it (`_session._ClaimPool`: once, for any argument)."""
    prepare, explain = _prepare(
        f"tc_{statement}",
        Queries(schema)[statement],
        "EXPLAIN (ANALYZE, FORMAT JSON)",
        caps="'{NULL,NULL}'",
        key_caps="'{NULL,NULL}'",
        rate_types="'{}'",
        rate_caps="'{}'",
        rate_windows="'{}'",
    )
    await admin.execute("BEGIN")
    try:
        if generic:
            await admin.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await admin.execute(prepare.encode())
        cur = await admin.execute(explain.encode())
        row = await cur.fetchone()
    finally:
        await admin.execute("ROLLBACK")
    assert row is not None
    document: list[dict[str, Any]] = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return document


@pytest.mark.parametrize("statement", ["claim_jobs", "claim_jobs_unlimited", "complete_and_claim"])
async def test_a_claim_of_every_queue_never_reads_a_paused_queues_backlog(
    make_store: StoreFactory, admin: Admin, schema: str, statement: str
) -> None:
    store = make_store()
    # The paused queue's jobs are ahead of the others: higher priority, enqueued first.
    await fill_backlog(store, priority=5, queue="bulk")
    await store.insert_jobs([NewJob(id=new_id(), type="big", data={}) for _ in range(3)])
    await store.insert_jobs([NewJob(id=new_id(), type="other", data={}, queue="bulk")])
    await admin.execute(f'ANALYZE "{schema}".jobs')
    assert await store.pause("bulk")

    document = await executed_plan(admin, schema, statement)
    plan = document[0]["Plan"]

    assert plan["Actual Rows"] == 3, document  # the default queue's jobs, none of "bulk"
    assert _rows_read(plan) < 100, json.dumps(document, indent=1)
