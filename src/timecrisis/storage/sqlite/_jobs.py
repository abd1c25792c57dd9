"""Job transactions for the SQLite store. Each function runs inside one transaction opened by
`ConnectionThread` (writes under `BEGIN IMMEDIATE`, so SQLite's single writer makes every
read-then-write here atomic across processes), with `now` read once from the store's clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from timecrisis.models import FINISHED_STATUSES, Job, JobStatus
from timecrisis.storage._common import (
    decide_failure,
    dump_json,
    expired_reason,
    lease_expired_error,
    new_id,
    resolve_expires_at,
    resolve_run_at,
)
from timecrisis.storage.base import (
    CancelOutcome,
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    FailOutcome,
    Failure,
    InsertResult,
    JobQuery,
    NewJob,
    PurgeParams,
    RenewResult,
)
from timecrisis.storage.sqlite._rows import (
    JOB_COLUMNS,
    from_us,
    job_from_row,
    opt_dt,
    opt_us,
    to_us,
)

_LIVE = "('pending', 'running')"


def _marks(count: int) -> str:
    return ",".join("?" * count)


def fetch_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else job_from_row(row)


def insert_jobs(
    conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime
) -> list[InsertResult]:
    results: list[InsertResult] = []
    now_us = to_us(now)
    for job in jobs:
        holder = None
        if job.unique_key is not None:
            holder = conn.execute(
                f"SELECT id FROM jobs WHERE type = ? AND unique_key = ? AND status IN {_LIVE}",
                (job.type, job.unique_key),
            ).fetchone()
        if holder is None and job.scheduled_job_id is not None and job.schedule_fire_at:
            holder = conn.execute(
                "SELECT id FROM jobs WHERE scheduled_job_id = ? AND schedule_fire_at = ?",
                (job.scheduled_job_id, to_us(job.schedule_fire_at)),
            ).fetchone()
        if holder is not None:
            results.append(InsertResult(holder[0], False))
            continue
        conn.execute(
            "INSERT INTO jobs (id, type, data, status, priority, max_retries, backoff_strategy, "
            "retry_delay, max_retry_delay, entity_id, scheduled_job_id, schedule_fire_at, "
            "unique_key, run_at, expires_at, created_at) "
            "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
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
            ),
        )
        results.append(InsertResult(job.id, True))
    return results


def list_jobs(conn: sqlite3.Connection, query: JobQuery) -> list[Job]:
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
        clauses.append("dead_lettered = ?")
        args.append(1 if query.dead_lettered else 0)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?",
        (*args, query.limit),
    ).fetchall()
    return [job_from_row(row) for row in rows]


def claim_jobs(conn: sqlite3.Connection, params: ClaimParams, now: datetime) -> list[ClaimedJob]:
    if params.limit <= 0 or not params.type_limits:
        return []
    now_us = to_us(now)
    limited = [t for t, limit in params.type_limits.items() if limit is not None]
    capacity: dict[str, int] = {}
    if limited:
        running = dict(
            conn.execute(
                "SELECT type, count(*) FROM jobs WHERE status = 'running' "
                f"AND type IN ({_marks(len(limited))}) GROUP BY type",
                limited,
            ).fetchall()
        )
        for job_type in limited:
            limit = params.type_limits[job_type]
            assert limit is not None
            capacity[job_type] = limit - running.get(job_type, 0)
    allowed = [t for t in params.type_limits if capacity.get(t, 1) > 0]
    lease_us = to_us(now + params.lease_ttl)
    claimed: list[ClaimedJob] = []
    need = params.limit
    # A type that fills up part-way is dropped and the scan repeats for the others, so a full
    # type never blocks the rest; each round claims a job or drops a type, so it terminates.
    while need > 0 and allowed:
        rows = conn.execute(
            "SELECT seq, type FROM jobs WHERE status = 'pending' AND run_at <= ? "
            "AND (expires_at IS NULL OR expires_at > ?) "
            f"AND type IN ({_marks(len(allowed))}) ORDER BY priority DESC, seq LIMIT ?",
            (now_us, now_us, *allowed, need),
        ).fetchall()
        chosen: list[int] = []
        filled = False
        for seq, job_type in rows:
            if job_type in capacity:
                if capacity[job_type] <= 0:
                    filled = True
                    continue
                capacity[job_type] -= 1
            chosen.append(seq)
        claimed.extend(_claim_one(conn, seq, params.worker, now_us, lease_us) for seq in chosen)
        need -= len(chosen)
        if not filled and len(rows) < need + len(chosen):
            break  # the queue has nothing more for these types
        allowed = [t for t in allowed if capacity.get(t, 1) > 0]
        if not chosen and not filled:
            break
    return claimed


def _claim_one(
    conn: sqlite3.Connection, seq: int, worker: str, now_us: int, lease_us: int
) -> ClaimedJob:
    token, run_id = new_id(), new_id()
    row = conn.execute(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, "
        "worker = ?, lock_token = ?, lock_expires_at = ?, run_id = ?, cancel_requested = 0 "
        f"WHERE seq = ? RETURNING {JOB_COLUMNS}",
        (now_us, worker, token, lease_us, run_id, seq),
    ).fetchone()
    job = job_from_row(row)
    conn.execute(
        "INSERT INTO job_runs (id, job_id, job_type, attempt, status, worker, started_at) "
        "VALUES (?, ?, ?, ?, 'running', ?, ?)",
        (run_id, job.id, job.type, job.attempts, worker, now_us),
    )
    return ClaimedJob(job, token, run_id, from_us(lease_us))


def renew_claims(
    conn: sqlite3.Connection, refs: Sequence[ClaimRef], lease_ttl: timedelta, now: datetime
) -> RenewResult:
    lease_us = to_us(now + lease_ttl)
    valid: set[str] = set()
    cancel: set[str] = set()
    for ref in refs:
        row = conn.execute(
            "UPDATE jobs SET lock_expires_at = ? WHERE id = ? AND lock_token = ? "
            "AND status = 'running' RETURNING cancel_requested",
            (lease_us, ref.job_id, ref.token),
        ).fetchone()
        if row is not None:
            valid.add(ref.job_id)
            if row[0]:
                cancel.add(ref.job_id)
    return RenewResult(frozenset(valid), frozenset(cancel))


def complete_jobs(
    conn: sqlite3.Connection, completions: Sequence[Completion], now: datetime
) -> list[datetime | None]:
    now_us = to_us(now)
    results: list[datetime | None] = []
    for completion in completions:
        ref = completion.ref
        status = JobStatus.CANCELED if completion.canceled else JobStatus.COMPLETED
        row = conn.execute(
            "UPDATE jobs SET status = ?, finished_at = ?, result = ?, "
            "progress = CASE WHEN ? THEN progress ELSE 100 END, "
            "worker = NULL, lock_token = NULL, lock_expires_at = NULL, run_id = NULL, "
            "cancel_requested = 0 "
            "WHERE id = ? AND lock_token = ? AND status = 'running' RETURNING id",
            (
                status.value,
                now_us,
                dump_json(completion.result),
                1 if completion.canceled else 0,
                ref.job_id,
                ref.token,
            ),
        ).fetchone()
        if row is None:
            results.append(None)
            continue
        _finish_run(conn, ref.run_id, "completed", now_us, None, progress=100.0)
        results.append(now)
    return results


def _finish_run(
    conn: sqlite3.Connection,
    run_id: str,
    status: str,
    now_us: int,
    error: str | None,
    *,
    progress: float | None = None,
) -> None:
    conn.execute(
        "UPDATE job_runs SET status = ?, finished_at = ?, duration = (? - started_at) / 1e6, "
        "error = ?, progress = COALESCE(?, progress) WHERE id = ?",
        (status, now_us, now_us, error, progress, run_id),
    )


def fail_job(conn: sqlite3.Connection, failure: Failure, now: datetime) -> FailOutcome | None:
    ref = failure.ref
    row = conn.execute(
        "SELECT attempts, max_retries, backoff_strategy, retry_delay, max_retry_delay, "
        "expires_at FROM jobs WHERE id = ? AND lock_token = ? AND status = 'running'",
        (ref.job_id, ref.token),
    ).fetchone()
    if row is None:
        return None
    return _apply_failure(conn, ref.job_id, ref.run_id, row, failure.error, failure.retryable, now)


def _apply_failure(
    conn: sqlite3.Connection,
    job_id: str,
    run_id: str | None,
    row: tuple[int, int, str, float, float, int | None],
    error: str,
    retryable: bool,
    now: datetime,
) -> FailOutcome:
    attempts, max_retries, strategy, retry_delay, max_retry_delay, expires_at = row
    decision = decide_failure(
        now=now,
        error=error,
        retryable=retryable,
        attempts=attempts,
        max_retries=max_retries,
        backoff_strategy=strategy,  # type: ignore[arg-type]
        retry_delay=retry_delay,
        max_retry_delay=max_retry_delay,
        expires_at=opt_dt(expires_at),
    )
    now_us = to_us(now)
    if run_id is not None:
        _finish_run(conn, run_id, "failed", now_us, error)
    if decision.will_retry:
        assert decision.run_at is not None
        updated = conn.execute(
            "UPDATE jobs SET status = 'pending', run_at = ?, fail_reason = ?, worker = NULL, "
            "lock_token = NULL, lock_expires_at = NULL, run_id = NULL, cancel_requested = 0 "
            f"WHERE id = ? RETURNING {JOB_COLUMNS}",
            (to_us(decision.run_at), decision.fail_reason, job_id),
        ).fetchone()
    else:
        updated = conn.execute(
            "UPDATE jobs SET status = 'failed', finished_at = ?, fail_reason = ?, "
            "dead_lettered = 1, worker = NULL, lock_token = NULL, lock_expires_at = NULL, "
            f"run_id = NULL, cancel_requested = 0 WHERE id = ? RETURNING {JOB_COLUMNS}",
            (now_us, decision.fail_reason, job_id),
        ).fetchone()
    return FailOutcome(job_from_row(updated), decision.will_retry, error)


def release_jobs(conn: sqlite3.Connection, refs: Sequence[ClaimRef], now: datetime) -> list[bool]:
    now_us = to_us(now)
    results: list[bool] = []
    for ref in refs:
        row = conn.execute(
            "UPDATE jobs SET status = 'pending', attempts = attempts - 1, worker = NULL, "
            "lock_token = NULL, lock_expires_at = NULL, run_id = NULL, cancel_requested = 0 "
            "WHERE id = ? AND lock_token = ? AND status = 'running' RETURNING id",
            (ref.job_id, ref.token),
        ).fetchone()
        if row is not None:
            _finish_run(conn, ref.run_id, "released", now_us, None)
        results.append(row is not None)
    return results


def update_progress(conn: sqlite3.Connection, ref: ClaimRef, percent: float) -> bool:
    row = conn.execute(
        "UPDATE jobs SET progress = ? WHERE id = ? AND lock_token = ? AND status = 'running' "
        "RETURNING id",
        (percent, ref.job_id, ref.token),
    ).fetchone()
    if row is None:
        return False
    conn.execute("UPDATE job_runs SET progress = ? WHERE id = ?", (percent, ref.run_id))
    return True


def cancel_job(conn: sqlite3.Connection, job_id: str, now: datetime) -> CancelOutcome:
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
        conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
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
            f"SELECT 1 FROM jobs WHERE type = ? AND unique_key = ? AND status IN {_LIVE}",
            (job_type, unique_key),
        ).fetchone()
        if holder is not None:
            return False  # another live job holds the key now
    conn.execute(
        "UPDATE jobs SET status = 'pending', attempts = 0, dead_lettered = 0, fail_reason = NULL, "
        "run_at = ?, finished_at = NULL, worker = NULL, lock_token = NULL, "
        "lock_expires_at = NULL, run_id = NULL, cancel_requested = 0 WHERE id = ?",
        (to_us(now), job_id),
    )
    return True


def purge_jobs(conn: sqlite3.Connection, params: PurgeParams, now: datetime) -> int:
    statuses = sorted(s.value for s in params.statuses)
    if not set(params.statuses) <= FINISHED_STATUSES:
        raise ValueError("purge_jobs only deletes completed, failed or canceled jobs")
    cutoff = to_us(now - params.older_than)
    limit = -1 if params.limit is None else params.limit
    cursor = conn.execute(
        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE finished_at IS NOT NULL "
        f"AND finished_at <= ? AND status IN ({_marks(len(statuses))}) "
        "ORDER BY finished_at LIMIT ?)",
        (cutoff, *statuses, limit),
    )
    return cursor.rowcount


def recover_expired_leases(
    conn: sqlite3.Connection, limit: int, now: datetime
) -> list[FailOutcome]:
    rows = conn.execute(
        "SELECT id, run_id, worker, lock_expires_at, attempts, max_retries, backoff_strategy, "
        "retry_delay, max_retry_delay, expires_at FROM jobs "
        "WHERE status = 'running' AND lock_expires_at <= ? ORDER BY lock_expires_at LIMIT ?",
        (to_us(now), limit),
    ).fetchall()
    outcomes = []
    for job_id, run_id, worker, lease, *rest in rows:
        error = lease_expired_error(worker, opt_dt(lease))
        outcomes.append(_apply_failure(conn, job_id, run_id, tuple(rest), error, True, now))
    return outcomes


def expire_jobs(conn: sqlite3.Connection, limit: int, now: datetime) -> list[Job]:
    now_us = to_us(now)
    rows = conn.execute(
        "SELECT id, expires_at FROM jobs WHERE status = 'pending' AND expires_at IS NOT NULL "
        "AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (now_us, limit),
    ).fetchall()
    expired = []
    for job_id, expires_at in rows:
        row = conn.execute(
            "UPDATE jobs SET status = 'failed', finished_at = ?, dead_lettered = 1, "
            f"fail_reason = ? WHERE id = ? RETURNING {JOB_COLUMNS}",
            (now_us, expired_reason(from_us(expires_at)), job_id),
        ).fetchone()
        expired.append(job_from_row(row))
    return expired
