"""SQLite-specific claim behaviour beyond the conformance suite: the claim reads each type's
queue head from its index (so a full type's backlog is never scanned), and a worker that runs
more types than one statement can merge still claims in global order within its limits."""

from __future__ import annotations

import pathlib
from datetime import datetime, timedelta

import pytest

from tests.sqlite.conftest import StoreFactory
from tests.storage.factories import LEASE, START, insert, new_job
from timecrisis.storage.base import ClaimParams
from timecrisis.storage.sqlite import SQLiteJobStorage
from timecrisis.storage.sqlite._claims import MAX_ARMS, _merge_heads, _Scope, claim_jobs
from timecrisis.storage.sqlite._connection import open_connection


def _plan(db: pathlib.Path, sql: str, args: list[object]) -> list[str]:
    conn = open_connection(db, busy_timeout=1)  # registers the functions the claim calls
    try:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    finally:
        conn.close()


async def test_each_type_queue_head_is_read_from_the_pending_index_without_sorting(
    store: SQLiteJobStorage, db_path: pathlib.Path
) -> None:
    await store.init()
    sql = _merge_heads("claim_jobs", (("claim_queue_head", 1),) * 3)
    args: list[object] = [0, "w", 0]
    for job_type in ("a", "b", "c"):
        args += [job_type, 0, 0, 5]

    plan = _plan(db_path, sql, [*args, 5])

    searches = [step for step in plan if step.startswith("SEARCH jobs USING")]
    assert searches.count("SEARCH jobs USING INDEX jobs_pending_queue (type=?)") == 3
    # Only the merge of the (at most `limit` rows per type) heads is sorted, once.
    assert sum("TEMP B-TREE" in step for step in plan) == 1


@pytest.mark.parametrize(
    "scope",
    [_Scope(queues=None, paused=()), _Scope(queues=None, paused=("p",)), _Scope(("a", "b"), ())],
    ids=["every-queue", "skipping-paused", "named-queues"],
)
async def test_a_keyed_type_checks_each_candidate_key_by_index_probes(
    store: SQLiteJobStorage, db_path: pathlib.Path, scope: _Scope
) -> None:
    """Flow control: the running count and the jobs ahead of a candidate's concurrency key
    are read from their partial indexes, so 100,000 distinct keys cost no scan, in every
    queue scope."""
    await store.init()
    sql = _merge_heads("claim_jobs", (scope.arm(True), scope.arm(False)))
    args: list[object] = [0, "w", 0]
    args += scope.arm_args("a", 5, 0, key_cap=2)
    args += scope.arm_args("b", 5, 0)

    plan = _plan(db_path, sql, [*args, 5])

    assert "SEARCH r USING INDEX jobs_running_keys (type=? AND concurrency_key=?)" in plan
    assert "SEARCH p USING INDEX jobs_pending_keys (type=? AND concurrency_key=?)" in plan
    assert not [step for step in plan if step.startswith("SCAN jobs")]


async def test_a_claim_of_every_queue_steps_over_paused_queues_within_the_pending_index(
    store: SQLiteJobStorage, db_path: pathlib.Path
) -> None:
    """Flow control: with a queue paused, each type's head is still one index range of the
    per-type index, and only the merge is sorted."""
    await store.init()
    scope = _Scope(queues=None, paused=("p",))
    sql = _merge_heads("claim_jobs", (scope.arm(False),) * 3)
    args: list[object] = [0, "w", 0]
    for job_type in ("a", "b", "c"):
        args += scope.arm_args(job_type, 5, 0)

    plan = _plan(db_path, sql, [*args, 5])

    searches = [step for step in plan if step.startswith("SEARCH jobs USING")]
    assert searches.count("SEARCH jobs USING INDEX jobs_pending_queue (type=?)") == 3
    assert sum("TEMP B-TREE" in step for step in plan) == 1


async def test_a_claim_of_named_queues_reads_each_type_and_queue_head_from_its_index(
    store: SQLiteJobStorage, db_path: pathlib.Path
) -> None:
    """Flow control: a worker serving queues a and b never reads the jobs of other queues (the
    per-type index would make it step over them all), only two heads per type."""
    await store.init()
    scope = _Scope(queues=("a", "b"), paused=())
    sql = _merge_heads("claim_jobs", (scope.arm(False),) * 3)
    args: list[object] = [0, "w", 0]
    for job_type in ("x", "y", "z"):
        args += scope.arm_args(job_type, 5, 0)

    plan = _plan(db_path, sql, [*args, 5])

    searches = [step for step in plan if step.startswith("SEARCH jobs USING")]
    assert searches.count("SEARCH jobs USING INDEX jobs_pending_by_queue (type=? AND queue=?)") == 6
    assert not any("jobs_pending_queue " in step for step in plan)


async def test_a_worker_with_more_types_than_one_statement_merges_claims_in_order(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    types = [f"type-{n:03d}" for n in range(MAX_ARMS + 50)]
    # One job per type, priorities spread over the whole range; plus a backlog of the
    # best-placed type, which is limited to one running job.
    jobs = [new_job(t, priority=(n * 7) % 41 - 20) for n, t in enumerate(types)]
    limited = max(jobs, key=lambda job: job.priority).type
    backlog = [new_job(limited, priority=20) for _ in range(5)]
    await insert(store, *jobs, *backlog)
    limits: dict[str, int | None] = dict.fromkeys(types)
    limits[limited] = 1

    claimed = await store.claim_jobs(
        ClaimParams(worker="w", limit=12, lease_ttl=LEASE, type_limits=limits)
    )

    ordered = sorted(
        [*jobs, *backlog], key=lambda job: (-job.priority, [*jobs, *backlog].index(job))
    )
    expected: list[str] = []
    took_limited = False
    for job in ordered:
        if job.type == limited:
            if took_limited:
                continue
            took_limited = True
        expected.append(job.id)
    assert [c.job.id for c in claimed] == expected[:12]
    assert sum(c.job.type == limited for c in claimed) == 1


async def test_a_worker_of_many_types_and_queues_slices_its_claim_and_keeps_the_order(
    make_store: StoreFactory,
) -> None:
    """Flow control: each type has one head per served queue, so fewer types fit in one
    statement; the slices still merge into the global claim order, other queues untouched."""
    store = make_store()
    types = [f"type-{n:03d}" for n in range(MAX_ARMS)]
    queues = ("q0", "q1", "q2")
    jobs = [
        new_job(t, priority=(n * 7) % 41 - 20, queue=queues[n % 3]) for n, t in enumerate(types)
    ]
    decoys = [new_job(t, priority=20, queue="unserved") for t in types[:50]]
    await insert(store, *decoys, *jobs)

    claimed = await store.claim_jobs(
        ClaimParams(
            worker="w",
            limit=12,
            lease_ttl=LEASE,
            type_limits=dict.fromkeys(types),
            queues=frozenset(queues),
        )
    )

    ordered = sorted(jobs, key=lambda job: (-job.priority, jobs.index(job)))
    assert [c.job.id for c in claimed] == [job.id for job in ordered[:12]]


@pytest.mark.parametrize("key_limits", [{}, {"big": 2}], ids=["plain", "keyed"])
async def test_a_claim_of_every_queue_never_reads_a_paused_queues_backlog(
    store: SQLiteJobStorage, db_path: pathlib.Path, key_limits: dict[str, int]
) -> None:
    """Flow control: a worker of every queue (the default) stepped over a paused queue's jobs
    one by one, so with 20,000 of them at the head of their type every claim read 20,000 rows,
    for as long as the pause lasted. It reads the head of each open queue instead (found one
    index probe per queue). Counted in SQLite virtual-machine steps, which a scan multiplies."""
    ahead = [new_job("big", priority=5, queue="bulk") for _ in range(20_000)]
    for start in range(0, len(ahead), 5_000):
        await store.insert_jobs(ahead[start : start + 5_000])
    wanted = [new_job("big"), new_job("big", queue="other")]
    await store.insert_jobs(wanted)
    assert await store.pause("bulk")

    params = ClaimParams(
        worker="w", limit=10, lease_ttl=LEASE, type_limits={"big": None}, key_limits=key_limits
    )

    claimed, steps = _claim_steps(db_path, params, START)

    assert sorted(claimed) == sorted(j.id for j in wanted)
    assert steps < 50, steps  # stepping over the paused backlog took 340


@pytest.mark.parametrize("queues", [None, frozenset({"default"})], ids=["every", "named"])
async def test_a_claim_never_reads_the_jobs_delayed_ahead(
    store: SQLiteJobStorage, db_path: pathlib.Path, queues: frozenset[str] | None
) -> None:
    """Jobs delayed into the future wait outside the queue indexes (migration 11): a claim
    stepped over every one of them ahead of the due jobs, 100,000 virtual-machine steps with
    20,000 of them (35 ms a claim with 100,000). Counted in steps, which such a walk
    multiplies."""
    delayed = [new_job("big", delay=timedelta(days=3)) for _ in range(20_000)]
    for start in range(0, len(delayed), 5_000):
        await store.insert_jobs(delayed[start : start + 5_000])
    due = [new_job("big") for _ in range(3)]
    await store.insert_jobs(due)
    params = ClaimParams(
        worker="w", limit=10, lease_ttl=LEASE, type_limits={"big": None}, queues=queues
    )

    claimed, steps = _claim_steps(db_path, params, START)

    assert sorted(claimed) == sorted(j.id for j in due)
    assert steps < 10, steps


async def test_delayed_jobs_join_the_queue_when_due_in_claim_order(
    store: SQLiteJobStorage, db_path: pathlib.Path
) -> None:
    """The claim that finds them due promotes them first: they are claimed at their place in
    claim order (priority, then enqueue sequence) among the jobs that never waited."""
    first = new_job("big", delay=timedelta(seconds=30))
    urgent = new_job("big", priority=5, delay=timedelta(seconds=10))
    plain = new_job("big")
    await store.insert_jobs([first, urgent, plain])
    params = ClaimParams(worker="w", limit=10, lease_ttl=LEASE, type_limits={"big": None})

    claimed, _ = _claim_steps(db_path, params, START + timedelta(minutes=1))

    assert claimed == [urgent.id, first.id, plain.id]


def _claim_steps(
    db_path: pathlib.Path, params: ClaimParams, now: datetime
) -> tuple[list[str], int]:
    """The ids one claim at `now` takes, in claim order (rolled back), and the thousands of
    virtual-machine steps it ran."""
    conn = open_connection(db_path, busy_timeout=1)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.set_progress_handler(count, 1_000)
        claimed = claim_jobs(conn, params, now)
        conn.set_progress_handler(None, 0)
    finally:
        conn.rollback()
        conn.close()
    return [c.job.id for c in claimed], steps
