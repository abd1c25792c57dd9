"""Jobs outside a claim: insert, read, list, cancel, retry, purge, expire.

Each function is the body of one transaction (see `_connection.py`): writes run under
`BEGIN IMMEDIATE`, so SQLite's single writer makes every read-then-write here atomic across
processes. `now` is the store's clock, read once per call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from timecrisis.models import FINISHED_STATUSES, Job
from timecrisis.storage._common import (
    dump_json,
    expired_reason,
    job_data_json,
    resolve_expires_at,
    resolve_run_at,
)
from timecrisis.storage._queries import load_queries
from timecrisis.storage.base import CancelOutcome, InsertResult, JobQuery, NewJob, PurgeParams
from timecrisis.storage.sqlite import _counts as counts
from timecrisis.storage.sqlite._rows import (
    fetch_jobs,
    from_us,
    job_from_row,
    json_array,
    opt_us,
    to_us,
)

Q = load_queries("timecrisis.storage.sqlite")


def insert_jobs(
    conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime
) -> list[InsertResult]:
    """All or none, in order, with one `executemany`. Jobs are new UUIDs, so only a batch that
    carries unique keys or schedule ticks has to find out afterwards which rows went in."""
    now_us = to_us(now)
    rows = [_insert_args(job, now, now_us) for job in jobs]  # every ValueError before a write
    if not any(job.unique_key is not None or job.scheduled_job_id is not None for job in jobs):
        conn.executemany(Q["insert_jobs"], rows)
        counts.jobs_counted(conn, [job.id for job in jobs], 1)
        return [InsertResult(job.id, True) for job in jobs]
    conn.executemany(Q["insert_jobs_unless_held"], rows)
    inserted = _existing_ids(conn, [job.id for job in jobs])
    counts.jobs_counted(conn, sorted(inserted), 1)
    return [
        InsertResult(job.id, True)
        if job.id in inserted
        else InsertResult(_holder(conn, job), False)
        for job in jobs
    ]


def _insert_args(job: NewJob, now: datetime, now_us: int) -> tuple[Any, ...]:
    run_at_us = to_us(resolve_run_at(job, now))
    return (
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
        opt_us(job.schedule_fire_at),
        job.unique_key,
        run_at_us,
        opt_us(resolve_expires_at(job, now)),
        now_us,
        None if job.headers is None else dump_json(job.headers),
        job.concurrency_key,
        job.queue,
        int(run_at_us > now_us),  # waiting (migration 11): out of the queue until due
    )


def _existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    return {row[0] for row in conn.execute(Q["existing_ids"], (json_array(ids),))}


def _holder(conn: sqlite3.Connection, job: NewJob) -> str:
    """The job that made `job` a duplicate: the one of the same schedule tick, else the live
    holder of its unique key (the order `InMemoryJobStorage` checks them in)."""
    row = None
    if job.scheduled_job_id is not None and job.schedule_fire_at is not None:
        row = conn.execute(
            Q["holder_of_tick"],
            (job.scheduled_job_id, to_us(job.schedule_fire_at)),
        ).fetchone()
    if row is None and job.unique_key is not None:
        row = conn.execute(Q["holder_of_unique_key"], (job.type, job.unique_key)).fetchone()
    if row is None:  # pragma: no cover - DO NOTHING skips a row only when one of these holds it
        raise AssertionError(f"job {job.id} was neither inserted nor held by another job")
    holder: str = row[0]
    return holder


# ---- reads -----------------------------------------------------------------------------------


def get_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(Q["get_job"], (job_id,)).fetchone()
    return None if row is None else job_from_row(row)


def list_jobs(conn: sqlite3.Connection, query: JobQuery) -> list[Job]:
    """Newest first, keyset-paged on `seq`: a page costs the same on page 1 and page 10,000.
    Each filter has an index that ends in `seq`, so no page sorts anything."""
    if query.limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
        return []
    clauses: list[str] = []
    args: list[object] = []
    if query.cursor is not None:
        row = conn.execute(Q["list_jobs_cursor"], (query.cursor,)).fetchone()
        if row is None:
            return []
        clauses.append("seq < ?")
        args.append(row[0])
    if query.status is not None:
        clauses.append("status = ?")
        args.append(query.status.value)
    if query.type is not None:
        clauses.append("type = ?")
        args.append(query.type)
    if query.entity_id is not None:
        clauses.append("entity_id = ?")
        args.append(query.entity_id)
    if query.dead_lettered is not None:
        # A literal, not a parameter: only then can SQLite use the partial dead-letter index.
        clauses.append("dead_lettered = 1" if query.dead_lettered else "dead_lettered = 0")
    # The one statement assembled here (queries.sql says why): the set filters join `true`.
    sql = Q["list_jobs"].replace("WHERE true", " AND ".join(["WHERE true", *clauses]), 1)
    return fetch_jobs(conn, sql, [*args, query.limit])


# ---- operator actions ------------------------------------------------------------------------


def cancel_job(
    conn: sqlite3.Connection, job_id: str, now: datetime, *, terminate: bool = False
) -> CancelOutcome:
    row = conn.execute(Q["cancel_job"], (job_id,)).fetchone()
    if row is None:
        return "not_found"
    if row[0] == "pending":
        conn.execute(Q["cancel_pending_job"], (to_us(now), job_id))
        counts.jobs_moved(conn, [job_id], "pending")
        return "canceled"
    if row[0] == "running":
        # The worker sees the request through renew_claims and ends the job `canceled`.
        # A later request without `terminate` does not withdraw an earlier one's.
        conn.execute(Q["request_cancel"], (int(terminate), job_id))
        return "cancel_requested"
    return "not_cancellable"


def retry_job(conn: sqlite3.Connection, job_id: str, now: datetime) -> bool:
    row = conn.execute(Q["retry_job_candidate"], (job_id,)).fetchone()
    if row is None:
        return False
    job_type, unique_key = row
    if unique_key is not None:
        holder = conn.execute(Q["retry_job_key_holder"], (job_type, unique_key)).fetchone()
        if holder is not None:
            return False  # another job holds the key now: reviving this one would break it
    counts.jobs_counted(conn, [job_id], -1)  # out of its failed or canceled key
    conn.execute(Q["retry_job"], (to_us(now), job_id))
    counts.jobs_counted(conn, [job_id], 1)
    return True


def purge_jobs(conn: sqlite3.Connection, params: PurgeParams, now: datetime) -> int:
    """Oldest finished first, through the `finished_at` index; runs and logs go with their job
    (ON DELETE CASCADE)."""
    unfinished = params.statuses - FINISHED_STATUSES
    if unfinished:
        raise ValueError(f"purge deletes finished jobs only, not {sorted(unfinished)}")
    if not params.statuses or (params.limit is not None and params.limit <= 0):
        return 0
    statuses = json_array(sorted(status.value for status in params.statuses))
    # "Older than" includes the cutoff itself, so `older_than=0` purges every finished job.
    doomed = conn.execute(
        Q["purge_candidates"],
        (to_us(now - params.older_than), statuses, -1 if params.limit is None else params.limit),
    ).fetchall()
    ids = [job_id for _, job_id in doomed]
    counts.jobs_counted(conn, ids, -1)
    counts.runs_of_jobs_removed(conn, ids)
    cursor = conn.execute(Q["purge_jobs"], (json_array([seq for seq, _ in doomed]),))
    return cursor.rowcount


def expire_jobs(conn: sqlite3.Connection, limit: int, now: datetime) -> list[Job]:
    if limit <= 0:
        return []
    now_us = to_us(now)
    rows = conn.execute(Q["expire_jobs_due"], (now_us, limit)).fetchall()
    conn.executemany(
        Q["expire_jobs"],
        [(now_us, expired_reason(from_us(expires_at)), seq) for seq, expires_at in rows],
    )
    expired = _jobs_by_seq(conn, [seq for seq, _ in rows])
    counts.jobs_moved(conn, [job.id for job in expired], "pending")
    return expired


def _jobs_by_seq(conn: sqlite3.Connection, seqs: Sequence[int]) -> list[Job]:
    """The jobs at `seqs`, in that order."""
    by_seq: dict[int, Job] = {
        row[-1]: job_from_row(row) for row in conn.execute(Q["jobs_by_seq"], (json_array(seqs),))
    }
    return [by_seq[seq] for seq in seqs]
