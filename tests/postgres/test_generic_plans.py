"""The claim statements run with generic plans (`_session._ClaimPool`): planned once, reused on
every call. A generic plan does not know the batch is small, so these statements must be
written so that even then they reach rows through indexes. This checks the plans on a table
large enough for a sequential scan to be a real risk, with planner statistics that know it."""

from __future__ import annotations

import re

import pytest

from tests.postgres.conftest import Admin, StoreFactory
from timecrisis.storage._common import new_id
from timecrisis.storage.base import NewJob
from timecrisis.storage.postgres._sql import Queries

pytestmark = pytest.mark.postgres

# The SQL type of every parameter the claim statements take, for PREPARE.
_PARAM_TYPES = {
    "now": "timestamptz",
    "limit": "int",
    "types": "text[]",
    "caps": "int[]",
    "worker": "text",
    "ttl": "interval",
    "ids": "text[]",
    "tokens": "text[]",
    "runs": "text[]",
    "results": "text[]",
    "canceled": "bool[]",
    "keys": "bigint[]",
    "key_caps": "int[]",  # flow control
    "rate_types": "text[]",
    "rate_caps": "int[]",
    "rate_windows": "interval[]",
    "queues": "text[]",
}
_ARGUMENTS = {
    "now": "NULL",
    "limit": "10",
    "types": "'{big,other}'",
    "caps": "'{NULL,3}'",
    "worker": "'w'",
    "ttl": "'30 seconds'",
    "ids": "'{a,b}'",
    "tokens": "'{x,y}'",
    "runs": "'{r,s}'",
    "results": "'{NULL,NULL}'",
    "canceled": "'{f,f}'",
    "keys": "'{1,2}'",
    "key_caps": "'{2,NULL}'",  # flow control: "big" limits its keys and its rate
    "rate_types": "'{big}'",
    "rate_caps": "'{5}'",
    "rate_windows": "'{1 second}'",
    "queues": "'{default,other}'",
}


def _prepare(
    name: str, query: bytes, explain: str = "EXPLAIN", **arguments: str
) -> tuple[str, str]:
    """PREPARE and EXPLAIN EXECUTE statements for `query`, its `%(name)s` parameters numbered,
    with the `_ARGUMENTS`, or the ones given."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, query.decode())
    types = ", ".join(_PARAM_TYPES[p] for p in order)
    values = ", ".join(arguments.get(p, _ARGUMENTS[p]) for p in order)
    return f"PREPARE {name} ({types}) AS {text}", f"{explain} EXECUTE {name} ({values})"


async def _generic_plan(admin: Admin, schema: str, statement: str) -> str:
    """EXPLAIN of `statement`'s generic plan (as the claim connections run it), as text."""
    prepare, explain = _prepare(f"tc_{statement}", Queries(schema)[statement])
    await admin.execute("SET plan_cache_mode = force_generic_plan")
    try:
        await admin.execute(prepare.encode())
        cur = await admin.execute(explain.encode())
        return "\n".join(row[0] for row in await cur.fetchall())
    finally:
        await admin.execute("DEALLOCATE ALL")
        await admin.execute("RESET plan_cache_mode")


@pytest.mark.parametrize(
    "statement",
    [
        "claim_jobs",
        "complete_and_claim",
        "complete_jobs",
        "claim_jobs_in_queues",  # flow control: the forms for named queues
        "complete_and_claim_in_queues",
        "claim_jobs_unlimited",  # an idle worker's claim, without flow control's limits
        "claim_jobs_unlimited_in_queues",
    ],
)
async def test_the_generic_plans_of_claim_statements_never_scan_the_jobs_table(
    make_store: StoreFactory, admin: Admin, schema: str, statement: str
) -> None:
    store = make_store()
    for _ in range(4):
        await store.insert_jobs([NewJob(id=new_id(), type="big", data={}) for _ in range(5_000)])
    await admin.execute(f'ANALYZE "{schema}".jobs')
    plan = await _generic_plan(admin, schema, statement)

    # Flow control's `rate_limit_starts` (one row per claim inside a rate-limit window, never
    # analyzed here) may be scanned by the prune, and `paused` (a handful of rows at most) by
    # the pause tests; the job tables never are.
    scans = [line for line in plan.splitlines() if "Seq Scan" in line]
    assert not [s for s in scans if "rate_limit_starts" not in s and "paused" not in s], plan
    if statement.endswith("_in_queues"):  # one (type, queue) head each: other queues unread
        assert "jobs_pending_by_queue" in plan, plan
    if statement != "complete_jobs":  # delayed jobs that came due: one range of their index
        assert "jobs_waiting" in plan, plan
    assert "Hash Join" not in plan or not statement.startswith("claim_jobs"), plan
    counts_running = statement in ("claim_jobs", "claim_jobs_in_queues")  # a limited type's
    if not counts_running:
        assert "jobs_running" not in plan, plan


async def test_claims_use_connections_that_plan_once(make_store: StoreFactory) -> None:
    store = make_store()
    await store.init()
    async with store._session.claim_connection("test") as conn:
        cur = await conn.execute("SHOW plan_cache_mode")
        assert await cur.fetchone() == ("force_generic_plan",)
        cur = await conn.execute("SHOW jit")
        assert await cur.fetchone() == ("off",)  # flow control: see _session._plan_once
    async with store._session.connection("test") as conn:
        cur = await conn.execute("SHOW plan_cache_mode")
        assert await cur.fetchone() == ("auto",)  # every other statement keeps custom plans


@pytest.mark.parametrize(
    "statement",
    [
        "claim_jobs",
        "complete_and_claim",
        "claim_jobs_in_queues",
        "complete_and_claim_in_queues",
        "claim_jobs_unlimited",
        "claim_jobs_unlimited_in_queues",
    ],
)
async def test_a_claim_writes_the_rows_it_locked_without_searching_for_them_again(
    make_store: StoreFactory, admin: Admin, schema: str, statement: str
) -> None:
    """Right after a burst of enqueues the planner has no statistics of the new rows (nothing
    has analyzed them yet: autovacuum is off here, as it is for the first minute of a real
    burst), guesses that few are pending, and planned the claim's UPDATE as a walk of the
    whole pending index, filtered by id: a claim then read every pending job. The claim
    writes the rows its `candidates` locked by their tuple ids, a plan no estimate can
    change."""
    store = make_store()
    await store.init()
    await admin.execute(f'ALTER TABLE "{schema}".jobs SET (autovacuum_enabled = false)')
    for _ in range(4):
        await store.insert_jobs([NewJob(id=new_id(), type="big", data={}) for _ in range(5_000)])
    plan = await _generic_plan(admin, schema, statement)

    update = re.split(r"\n\s*CTE (?!Scan)", plan.split("CTE claimed", 1)[1])[0]
    assert "Tid Scan on jobs" in update, plan
