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
    resolve_expires_at,
    resolve_run_at,
)
from timecrisis.storage.base import CancelOutcome, InsertResult, JobQuery, NewJob, PurgeParams
from timecrisis.storage.sqlite._rows import (
    JOB_COLUMNS,
    chunks,
    fetch_jobs,
    from_us,
    in_list,
    job_from_row,
    opt_us,
    to_us,
)

_INSERT = (
    "INSERT INTO jobs (id, type, data, status, priority, max_retries, backoff_strategy, "
    "retry_delay, max_retry_delay, entity_id, scheduled_job_id, schedule_fire_at, unique_key, "
    "run_at, expires_at, created_at, headers, queue) "
    "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A job whose unique key or schedule tick is already held is skipped, not an error; the
# conflict targets repeat the partial indexes' WHERE so SQLite matches them. A duplicate `id`
# still raises (no target covers it): that is a caller bug, and the whole batch is refused.
_INSERT_UNLESS_HELD = (
    _INSERT
    + " ON CONFLICT (type, unique_key)"
    + " WHERE unique_key IS NOT NULL AND status IN ('pending', 'running') DO NOTHING"
    + " ON CONFLICT (scheduled_job_id, schedule_fire_at)"
    + " WHERE scheduled_job_id IS NOT NULL DO NOTHING"
)


def insert_jobs(
    conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime
) -> list[InsertResult]:
    """All or none, in order, with one `executemany`. Jobs are new UUIDs, so only a batch that
    carries unique keys or schedule ticks has to find out afterwards which rows went in."""
    now_us = to_us(now)
    rows = [_insert_args(job, now, now_us) for job in jobs]  # every ValueError before a write
    if not any(job.unique_key is not None or job.scheduled_job_id is not None for job in jobs):
        conn.executemany(_INSERT, rows)
        return [InsertResult(job.id, True) for job in jobs]
    conn.executemany(_INSERT_UNLESS_HELD, rows)
    inserted = _existing_ids(conn, [job.id for job in jobs])
    return [
        InsertResult(job.id, True)
        if job.id in inserted
        else InsertResult(_holder(conn, job), False)
        for job in jobs
    ]


def _insert_args(job: NewJob, now: datetime, now_us: int) -> tuple[Any, ...]:
    return (
        job.id,
        job.type,
        dump_json(job.data),
        job.priority,
        job.max_retries,
        job.backoff_strategy,
        job.retry_delay,
        job.max_retry_delay,
        job.entity_id,
        job.scheduled_job_id,
        opt_us(job.schedule_fire_at),
        job.unique_key,
        to_us(resolve_run_at(job, now)),
        opt_us(resolve_expires_at(job, now)),
        now_us,
        None if job.headers is None else dump_json(job.headers),
        job.queue,
    )


def _existing_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(ids):
        marks, args = in_list(chunk)
        found.update(
            row[0] for row in conn.execute(f"SELECT id FROM jobs WHERE id IN {marks}", args)
        )
    return found


def _holder(conn: sqlite3.Connection, job: NewJob) -> str:
    """The job that made `job` a duplicate: the one of the same schedule tick, else the live
    holder of its unique key (the order `InMemoryJobStorage` checks them in)."""
    row = None
    if job.scheduled_job_id is not None and job.schedule_fire_at is not None:
        row = conn.execute(
            "SELECT id FROM jobs WHERE scheduled_job_id = ? AND schedule_fire_at = ?",
            (job.scheduled_job_id, to_us(job.schedule_fire_at)),
        ).fetchone()
    if row is None and job.unique_key is not None:
        row = conn.execute(
            "SELECT id FROM jobs WHERE type = ? AND unique_key = ? "
            "AND status IN ('pending', 'running')",
            (job.type, job.unique_key),
        ).fetchone()
    if row is None:  # pragma: no cover - DO NOTHING skips a row only when one of these holds it
        raise AssertionError(f"job {job.id} was neither inserted nor held by another job")
    holder: str = row[0]
    return holder


# ---- reads -----------------------------------------------------------------------------------


def get_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else job_from_row(row)


def list_jobs(conn: sqlite3.Connection, query: JobQuery) -> list[Job]:
    """Newest first, keyset-paged on `seq`: a page costs the same on page 1 and page 10,000.
    Each filter has an index that ends in `seq`, so no page sorts anything."""
    if query.limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
        return []
    clauses: list[str] = []
    args: list[object] = []
    if query.cursor is not None:
        row = conn.execute("SELECT seq FROM jobs WHERE id = ?", (query.cursor,)).fetchone()
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
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return fetch_jobs(
        conn,
        f"SELECT {JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?",
        [*args, query.limit],
    )


# ---- operator actions ------------------------------------------------------------------------


def cancel_job(
    conn: sqlite3.Connection, job_id: str, now: datetime, *, terminate: bool = False
) -> CancelOutcome:
    row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return "not_found"
    if row[0] == "pending":
        conn.execute(
            "UPDATE jobs SET status = 'canceled', finished_at = ? WHERE id = ?",
            (to_us(now), job_id),
        )
        return "canceled"
    if row[0] == "running":
        # The worker sees the request through renew_claims and ends the job `canceled`.
        # A later request without `terminate` does not withdraw an earlier one's.
        conn.execute(
            "UPDATE jobs SET cancel_requested = 1, cancel_terminate = max(cancel_terminate, ?) "
            "WHERE id = ?",
            (int(terminate), job_id),
        )
        return "cancel_requested"
    return "not_cancellable"


def retry_job(conn: sqlite3.Connection, job_id: str, now: datetime) -> bool:
    row = conn.execute(
        "SELECT type, unique_key FROM jobs WHERE id = ? AND status IN ('failed', 'canceled')",
        (job_id,),
    ).fetchone()
    if row is None:
        return False
    job_type, unique_key = row
    if unique_key is not None:
        holder = conn.execute(
            "SELECT 1 FROM jobs WHERE type = ? AND unique_key = ? "
            "AND status IN ('pending', 'running')",
            (job_type, unique_key),
        ).fetchone()
        if holder is not None:
            return False  # another job holds the key now: reviving this one would break it
    conn.execute(
        "UPDATE jobs SET status = 'pending', attempts = 0, dead_lettered = 0, fail_reason = NULL, "
        "failure_kind = NULL, run_at = ?, finished_at = NULL, worker = NULL, lock_token = NULL, "
        "lock_expires_at = NULL, run_id = NULL, cancel_requested = 0, cancel_terminate = 0 "
        "WHERE id = ?",
        (to_us(now), job_id),
    )
    return True


def purge_jobs(conn: sqlite3.Connection, params: PurgeParams, now: datetime) -> int:
    """Oldest finished first, through the `finished_at` index; runs and logs go with their job
    (ON DELETE CASCADE)."""
    unfinished = params.statuses - FINISHED_STATUSES
    if unfinished:
        raise ValueError(f"purge deletes finished jobs only, not {sorted(unfinished)}")
    if not params.statuses or (params.limit is not None and params.limit <= 0):
        return 0
    marks, statuses = in_list(sorted(status.value for status in params.statuses))
    # "Older than" includes the cutoff itself, so `older_than=0` purges every finished job.
    cursor = conn.execute(
        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_finished "
        "WHERE finished_at IS NOT NULL "
        f"AND finished_at <= ? AND status IN {marks} ORDER BY finished_at, seq LIMIT ?)",
        (to_us(now - params.older_than), *statuses, -1 if params.limit is None else params.limit),
    )
    return cursor.rowcount


def expire_jobs(conn: sqlite3.Connection, limit: int, now: datetime) -> list[Job]:
    if limit <= 0:
        return []
    now_us = to_us(now)
    rows = conn.execute(
        "SELECT seq, expires_at FROM jobs INDEXED BY jobs_pending_expiry "
        "WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= ? "
        "ORDER BY expires_at, seq LIMIT ?",
        (now_us, limit),
    ).fetchall()
    conn.executemany(
        "UPDATE jobs SET status = 'failed', finished_at = ?, dead_lettered = 1, fail_reason = ?, "
        "failure_kind = 'expired' WHERE seq = ?",
        [(now_us, expired_reason(from_us(expires_at)), seq) for seq, expires_at in rows],
    )
    return _jobs_by_seq(conn, [seq for seq, _ in rows])


def _jobs_by_seq(conn: sqlite3.Connection, seqs: Sequence[int]) -> list[Job]:
    """The jobs at `seqs`, in that order."""
    by_seq: dict[int, Job] = {}
    for chunk in chunks(seqs):
        marks, args = in_list(chunk)
        for row in conn.execute(f"SELECT {JOB_COLUMNS}, seq FROM jobs WHERE seq IN {marks}", args):
            by_seq[row[-1]] = job_from_row(row)
    return [by_seq[seq] for seq in seqs]
