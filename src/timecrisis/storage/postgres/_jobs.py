"""Job statements outside the claim lifecycle: insert, read, cancel, retry, purge.

Each function runs on a connection its caller chose (a pooled one, or the caller's own
transaction for a transactional enqueue) and never commits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.errors import UniqueViolation
from psycopg.rows import DictRow, dict_row

from timecrisis.errors import StorageError
from timecrisis.models import FINISHED_STATUSES, Job
from timecrisis.storage._common import (
    dump_json,
    job_data_json,
    resolve_expires_at,
    resolve_run_at,
    to_utc,
)
from timecrisis.storage.base import CancelOutcome, InsertResult, JobQuery, NewJob, PurgeParams
from timecrisis.storage.postgres._db import Conn, Context, fetch_all, fetch_one, fetch_value
from timecrisis.storage.postgres._rows import job_from_row

# A holder that finishes between our conflict and our lookup frees its key: insert again. Each
# round needs another job to grab and release the same key in that window, so a few suffice.
_MAX_INSERT_ROUNDS = 5


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)  # to_utc refuses naive datetimes


def _iso(value: datetime | None) -> str | None:
    return None if value is None else to_utc(value).isoformat()  # to_utc refuses naive ones


def _interval(value: timedelta | None) -> str | None:
    # Exact in any IntervalStyle: explicit signs, seconds and microseconds. No days: PostgreSQL
    # adds an interval's days in the session's time zone (23 or 25 hours across a DST change),
    # where every store (and `copy_jobs`) adds elapsed time, as Python does.
    if value is None:
        return None
    seconds = value.days * 86_400 + value.seconds
    return f"{seconds:+d} second {value.microseconds:+d} microsecond"


def _row(job: NewJob) -> list[Any]:
    """One job as the JSON array `insert_jobs` unpacks, positions as in queries.sql."""
    return [
        job.id,
        job.type,
        job_data_json(job),
        job.priority,
        job.max_retries,
        job.backoff_strategy,
        job.retry_delay,
        job.max_retry_delay,
        job.entity_id,
        job.scheduled_job_id,
        _iso(job.schedule_fire_at),
        job.unique_key,
        _iso(job.run_at),
        _interval(job.delay),
        _iso(job.expires_at),
        _interval(job.expires_in),
        job.headers,  # a JSON object in the row's array; `->>` gives its text back
        job.concurrency_key,
        job.queue,
    ]


def _insert_params(jobs: Sequence[NewJob], now: datetime | None, channel: str) -> dict[str, Any]:
    # All rows in one JSON text: one json.dumps call instead of eighteen psycopg array dumps.
    return {"now": now, "channel": channel, "rows": dump_json([_row(j) for j in jobs])}


def _insert_one_params(job: NewJob, now: datetime | None, channel: str) -> dict[str, Any]:
    """The parameters of `insert_job` (a job without unique key or schedule tick)."""
    return {
        "id": job.id,
        "type": job.type,
        "data": job_data_json(job),
        "priority": job.priority,
        "max_retries": job.max_retries,
        "backoff": job.backoff_strategy,
        "retry_delay": job.retry_delay,
        "max_retry_delay": job.max_retry_delay,
        "entity_id": job.entity_id,
        "now": now,
        "delay": _interval(job.delay),
        "run_at": _opt_utc(job.run_at),
        "expires_in": _interval(job.expires_in),
        "expires_at": _opt_utc(job.expires_at),
        "headers": None if job.headers is None else dump_json(job.headers),
        "concurrency_key": job.concurrency_key,
        "queue": job.queue,
        "channel": channel,
    }


def may_conflict(jobs: Sequence[NewJob]) -> bool:
    """Whether a batch can meet a unique key or a schedule tick (and so need a second
    statement, inside the same transaction, to name the holders)."""
    return any(j.unique_key is not None or j.scheduled_job_id is not None for j in jobs)


# From this many jobs a batch goes in with COPY (`copy_jobs`): its more round trips (BEGIN, the
# clock, the COPY, the NOTIFY, the COMMIT) are paid back by a cheaper insert per row. Measured:
# 100 jobs 6.0 ms with the INSERT, 7.8 with COPY; 150: 6.1 and 5.9; 1,000: 33 and 27.
COPY_MIN_BATCH = 150

# The types of the `copy_jobs` columns, in order. A JSON column is sent as its text: the server's
# binary input of `json` is the text itself (psycopg's json dumper would encode a str again).
_COPY_TYPES = [
    "text", "text", "text", "text", "int4", "int4", "text", "float8",
    "float8", "text", "timestamptz", "bool", "timestamptz", "timestamptz", "text", "text",
    "text",
]  # fmt: skip


def can_copy(jobs: Sequence[NewJob]) -> bool:
    """Whether `copy_jobs` may insert this batch: large, and nothing in it can be skipped."""
    return len(jobs) >= COPY_MIN_BATCH and not may_conflict(jobs)


async def copy_jobs(
    conn: Conn, ctx: Context, jobs: Iterable[NewJob], now: datetime | None
) -> list[InsertResult]:
    """Insert a batch that `can_copy` with COPY, inside the caller's transaction (which must be
    open: the clock read here is that transaction's). The same rows as `insert_jobs`; any
    conflict (an id that exists) fails the transaction, so the batch. `jobs` may be an
    iterator that still makes them (`StreamedInsert`): the rows already formatted are on their
    way meanwhile, and anything it raises aborts the COPY, so the transaction."""
    # In UTC: an aware datetime in the session's zone adds a timedelta as wall-clock time.
    clock = to_utc(await fetch_value(conn, ctx.queries["db_now"], {"now": now}))
    ids: list[str] = []
    seen: set[str] = set()
    batch: Counter[tuple[str, str]] = Counter()  # jobs per (type, queue), for the job counts
    async with conn.cursor().copy(ctx.queries["copy_jobs"]) as copy:
        copy.set_types(_COPY_TYPES)
        for job in jobs:
            if job.unique_key is not None or job.scheduled_job_id is not None:
                raise ValueError("copy_jobs takes no job with a unique key or a schedule tick")
            seen.add(job.id)
            ids.append(job.id)
            if len(seen) != len(ids):
                raise StorageError("a batch of jobs repeats an id")
            await copy.write_row(_copy_row(job, clock))
            batch[job.type, job.queue] += 1
    keys = list(batch)
    await conn.execute(
        ctx.queries["count_copied_jobs"],
        {
            "types": [t for t, _ in keys],
            "queues": [q for _, q in keys],
            "ns": [batch[k] for k in keys],
        },
    )
    await conn.execute(ctx.queries["notify"], {"channel": ctx.channel})
    return [InsertResult(job_id, True) for job_id in ids]


def _copy_row(job: NewJob, now: datetime) -> tuple[Any, ...]:
    """One job as the row `copy_jobs` writes: the values `insert_jobs` would compute."""
    run_at = resolve_run_at(job, now)
    return (
        job.id,
        job.type,
        job_data_json(job),
        "pending",
        job.priority,
        job.max_retries,
        job.backoff_strategy,
        job.retry_delay,
        job.max_retry_delay,
        job.entity_id,
        run_at,
        run_at > now,  # `waiting`: delayed into the future (migration 0011), as the INSERT sets it
        resolve_expires_at(job, now),
        now,
        None if job.headers is None else dump_json(job.headers),
        job.concurrency_key,
        job.queue,
    )


async def insert_jobs(
    conn: Conn, ctx: Context, jobs: Sequence[NewJob], now: datetime | None
) -> list[InsertResult]:
    """Insert `jobs` in order; for each skipped one, the id of the job holding its key. With
    unique keys or schedule ticks this takes several statements: run it in a transaction."""
    plan = _insert_plan(ctx, jobs, now)
    rows: list[DictRow] | None = None
    while True:
        try:
            query, params = plan.send(rows)  # type: ignore[arg-type] # None starts the plan
        except StopIteration as done:
            results: list[InsertResult] = done.value
            return results
        rows = await fetch_all(conn, query, params)


def insert_jobs_sync(
    conn: psycopg.Connection[Any], ctx: Context, jobs: Sequence[NewJob], now: datetime | None
) -> list[InsertResult]:
    """`insert_jobs` on a blocking connection (`enqueue_sync(..., connection=conn)`): the same
    statements, in the same order, decided by the same plan."""
    plan = _insert_plan(ctx, jobs, now)
    rows: list[DictRow] | None = None
    while True:
        try:
            query, params = plan.send(rows)  # type: ignore[arg-type] # None starts the plan
        except StopIteration as done:
            results: list[InsertResult] = done.value
            return results
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            rows = cur.fetchall()


_Statement = tuple[bytes, dict[str, Any]]
_Plan = Generator[_Statement, list[DictRow], list[InsertResult]]


def _insert_plan(ctx: Context, jobs: Sequence[NewJob], now: datetime | None) -> _Plan:
    """The insert as a conversation: it yields each statement, receives its rows, and returns
    the results. Written once for the async and the blocking connection (no I/O in here)."""
    ids = [job.id for job in jobs]
    if len(set(ids)) != len(ids):
        raise StorageError("a batch of jobs repeats an id")
    if not may_conflict(jobs):
        # Nothing to skip: any conflict (an id that exists) fails the statement, so the batch.
        if len(jobs) == 1:
            yield ctx.queries["insert_job"], _insert_one_params(jobs[0], now, ctx.channel)
        else:
            yield ctx.queries["insert_jobs"], _insert_params(jobs, now, ctx.channel)
        return [InsertResult(job_id, True) for job_id in ids]
    results: list[InsertResult | None] = [None] * len(jobs)
    todo = list(range(len(jobs)))
    statement = ctx.queries["insert_jobs_skipping_taken"]
    for _ in range(_MAX_INSERT_ROUNDS):
        batch = [jobs[i] for i in todo]
        rows = yield statement, _insert_params(batch, now, ctx.channel)
        created = {row["id"] for row in rows}
        skipped = []
        for i in todo:
            if jobs[i].id in created:
                results[i] = InsertResult(jobs[i].id, True)
            else:
                skipped.append(i)
        if not skipped:
            break
        todo = yield from _name_holders(ctx, jobs, skipped, results)
        if not todo:
            break
    else:
        raise StorageError("could not insert jobs: their unique keys kept changing hands")
    return [r for r in results if r is not None]


def _name_holders(
    ctx: Context,
    jobs: Sequence[NewJob],
    skipped: list[int],
    results: list[InsertResult | None],
) -> Generator[_Statement, list[DictRow], list[int]]:
    """Fill in the holders of skipped jobs; return the ones whose holder vanished."""
    chosen = [jobs[i] for i in skipped]
    rows = yield (
        ctx.queries["find_holders"],
        {
            "ns": skipped,
            "types": [j.type for j in chosen],
            "keys": [j.unique_key for j in chosen],
            "schedules": [j.scheduled_job_id for j in chosen],
            "fire_ats": [_opt_utc(j.schedule_fire_at) for j in chosen],
        },
    )
    again = []
    for row in rows:
        index: int = row["n"]
        job = jobs[index]
        if row["holder"] is not None:
            results[index] = InsertResult(row["holder"], False)
        elif job.unique_key is None and job.scheduled_job_id is None:
            raise StorageError(f"a job with id {job.id!r} already exists")
        else:
            again.append(index)
    return again


async def get_job(conn: Conn, ctx: Context, job_id: str) -> Job | None:
    row = await fetch_one(conn, ctx.queries["get_job"], {"id": job_id})
    return None if row is None else job_from_row(row)


async def list_jobs(conn: Conn, ctx: Context, query: JobQuery) -> list[Job]:
    rows = await fetch_all(
        conn,
        ctx.queries["list_jobs"],
        {
            "status": None if query.status is None else query.status.value,
            "type": query.type,
            "entity_id": query.entity_id,
            "dead": query.dead_lettered,
            "cursor": query.cursor,
            "limit": query.limit,
        },
        # Unprepared, so each call is planned with its own filters (see queries.sql).
        prepare=False,
    )
    return [job_from_row(row) for row in rows]


async def cancel_job(
    conn: Conn, ctx: Context, job_id: str, now: datetime | None, *, terminate: bool = False
) -> CancelOutcome:
    row = await fetch_one(
        conn, ctx.queries["cancel_job"], {"id": job_id, "now": now, "terminate": terminate}
    )
    assert row is not None
    if row["status"] == "canceled":
        return "canceled"
    if row["status"] == "running":
        return "cancel_requested"
    return "not_cancellable" if row["found"] else "not_found"


async def retry_job(conn: Conn, ctx: Context, job_id: str, now: datetime | None) -> bool:
    try:
        rows = await fetch_all(conn, ctx.queries["retry_job"], {"id": job_id, "now": now})
    except UniqueViolation:
        # A job holding the same unique key was enqueued concurrently (after our snapshot):
        # the retry loses, exactly as if it had seen that job.
        return False
    return bool(rows)


async def purge_jobs(conn: Conn, ctx: Context, params: PurgeParams, now: datetime | None) -> int:
    if not set(params.statuses) <= FINISHED_STATUSES:
        raise ValueError("purge_jobs only deletes completed, failed or canceled jobs")
    count = await fetch_value(
        conn,
        ctx.queries["purge_jobs"],
        {
            "now": now,
            "age": params.older_than,
            "statuses": sorted(s.value for s in params.statuses),
            "limit": params.limit,
        },
    )
    return int(count)
