"""Locks, workers, schedules, history and metrics for the SQLite store (one transaction each)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from timecrisis.models import JobLog, JobRun, Metrics, ScheduledJob, TypeMetrics, WorkerInfo
from timecrisis.storage._common import (
    canonical_json,
    dump_json,
    new_id,
    schedule_definition_changed,
)
from timecrisis.storage.base import (
    AdvanceResult,
    DueSchedules,
    LockInfo,
    NewLogEntry,
    ScheduleAdvance,
    ScheduleSpec,
)
from timecrisis.storage.sqlite._jobs import insert_jobs
from timecrisis.storage.sqlite._rows import (
    RUN_COLUMNS,
    SCHEDULE_COLUMNS,
    from_us,
    log_from_row,
    opt_dt,
    opt_us,
    run_from_row,
    schedule_from_row,
    to_us,
    worker_from_row,
)

# ---- locks -----------------------------------------------------------------------------------


def acquire_lock(
    conn: sqlite3.Connection, name: str, owner: str, ttl: timedelta, now: datetime
) -> str | None:
    now_us = to_us(now)
    row = conn.execute("SELECT expires_at FROM locks WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] > now_us:
        return None
    token = new_id()
    conn.execute(
        "INSERT INTO locks (name, owner, token, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, token = excluded.token, "
        "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
        (name, owner, token, now_us, to_us(now + ttl)),
    )
    return token


def renew_lock(
    conn: sqlite3.Connection, name: str, token: str, ttl: timedelta, now: datetime
) -> bool:
    cursor = conn.execute(
        "UPDATE locks SET expires_at = ? WHERE name = ? AND token = ? AND expires_at > ?",
        (to_us(now + ttl), name, token, to_us(now)),
    )
    return cursor.rowcount == 1


def release_lock(conn: sqlite3.Connection, name: str, token: str) -> bool:
    cursor = conn.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))
    return cursor.rowcount == 1


def get_lock(conn: sqlite3.Connection, name: str, now: datetime) -> LockInfo | None:
    row = conn.execute(
        "SELECT name, owner, expires_at, acquired_at FROM locks WHERE name = ? AND expires_at > ?",
        (name, to_us(now)),
    ).fetchone()
    if row is None:
        return None
    return LockInfo(row[0], row[1], from_us(row[2]), from_us(row[3]))


# ---- workers ---------------------------------------------------------------------------------


def heartbeat_worker(
    conn: sqlite3.Connection, name: str, running: int, is_leader: bool, now: datetime
) -> None:
    now_us = to_us(now)
    conn.execute(
        "INSERT INTO workers (name, first_seen, last_heartbeat, is_leader, running) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "last_heartbeat = excluded.last_heartbeat, is_leader = excluded.is_leader, "
        "running = excluded.running",
        (name, now_us, now_us, 1 if is_leader else 0, running),
    )


def list_workers(conn: sqlite3.Connection) -> list[WorkerInfo]:
    rows = conn.execute(
        "SELECT name, first_seen, last_heartbeat, is_leader, running FROM workers ORDER BY name"
    ).fetchall()
    return [worker_from_row(row) for row in rows]


def prune_workers(conn: sqlite3.Connection, inactive_for: timedelta, now: datetime) -> list[str]:
    now_us = to_us(now)
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM workers WHERE last_heartbeat < ? ORDER BY name",
            (to_us(now - inactive_for),),
        ).fetchall()
    ]
    for name in names:
        conn.execute("DELETE FROM workers WHERE name = ?", (name,))
        # End their leases now, so the reaper recovers their jobs without waiting out the TTL.
        conn.execute(
            "UPDATE jobs SET lock_expires_at = ? WHERE status = 'running' AND worker = ? "
            "AND lock_expires_at > ?",
            (now_us - 1, name, now_us - 1),
        )
    return names


# ---- schedules -------------------------------------------------------------------------------


def upsert_schedule(conn: sqlite3.Connection, spec: ScheduleSpec, now: datetime) -> ScheduledJob:
    now_us = to_us(now)
    row = conn.execute(
        "SELECT id, type, schedule_type, schedule_value, time_zone, data, enabled "
        "FROM scheduled_jobs WHERE name = ?",
        (spec.name,),
    ).fetchone()
    if row is None:
        schedule_id = spec.id or new_id()
        conn.execute(
            f"INSERT INTO scheduled_jobs ({SCHEDULE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            (
                schedule_id,
                spec.name,
                spec.type,
                canonical_json(spec.data),
                spec.schedule_type,
                spec.schedule_value,
                spec.time_zone,
                0 if spec.enabled is False else 1,
                1 if spec.allow_overlap else 0,
                opt_us(spec.next_run_at),
                now_us,
                now_us,
            ),
        )
    else:
        schedule_id, old_type, old_kind, old_value, old_zone, old_data, old_enabled = row
        changed = schedule_definition_changed(
            old_type, old_kind, old_value, old_zone, old_data, spec
        )
        enabled = old_enabled if spec.enabled is None else (1 if spec.enabled else 0)
        if changed:
            conn.execute(
                "UPDATE scheduled_jobs SET type = ?, data = ?, schedule_type = ?, "
                "schedule_value = ?, time_zone = ?, next_run_at = ?, enabled = ?, "
                "allow_overlap = ?, updated_at = ? WHERE id = ?",
                (
                    spec.type,
                    canonical_json(spec.data),
                    spec.schedule_type,
                    spec.schedule_value,
                    spec.time_zone,
                    opt_us(spec.next_run_at),
                    enabled,
                    1 if spec.allow_overlap else 0,
                    now_us,
                    schedule_id,
                ),
            )
        else:
            conn.execute(
                "UPDATE scheduled_jobs SET enabled = ?, allow_overlap = ?, updated_at = ? "
                "WHERE id = ?",
                (enabled, 1 if spec.allow_overlap else 0, now_us, schedule_id),
            )
    result = get_schedule(conn, spec.name)
    assert result is not None
    return result


def get_schedule(conn: sqlite3.Connection, name: str) -> ScheduledJob | None:
    row = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM scheduled_jobs WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else schedule_from_row(row)


def list_schedules(conn: sqlite3.Connection) -> list[ScheduledJob]:
    rows = conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM scheduled_jobs ORDER BY name").fetchall()
    return [schedule_from_row(row) for row in rows]


def set_schedule_enabled(conn: sqlite3.Connection, name: str, enabled: bool, now: datetime) -> bool:
    cursor = conn.execute(
        "UPDATE scheduled_jobs SET enabled = ?, updated_at = ? WHERE name = ?",
        (1 if enabled else 0, to_us(now), name),
    )
    return cursor.rowcount == 1


def delete_schedule(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM scheduled_jobs WHERE name = ?", (name,)).rowcount == 1


def get_due_schedules(conn: sqlite3.Connection, limit: int, now: datetime) -> DueSchedules:
    now_us = to_us(now)
    rows = conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM scheduled_jobs WHERE enabled = 1 "
        "AND next_run_at IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at, name LIMIT ?",
        (now_us, limit),
    ).fetchall()
    upcoming = conn.execute(
        "SELECT min(next_run_at) FROM scheduled_jobs WHERE enabled = 1 "
        "AND next_run_at IS NOT NULL AND next_run_at > ?",
        (now_us,),
    ).fetchone()
    return DueSchedules(now, [schedule_from_row(row) for row in rows], opt_dt(upcoming[0]))


def advance_schedule(
    conn: sqlite3.Connection, advance: ScheduleAdvance, now: datetime
) -> AdvanceResult:
    cursor = conn.execute(
        "UPDATE scheduled_jobs SET next_run_at = ?, "
        "enabled = CASE WHEN ? THEN 0 ELSE enabled END, updated_at = ? "
        "WHERE id = ? AND next_run_at = ?",
        (
            opt_us(advance.next_run_at),
            1 if advance.disable else 0,
            to_us(now),
            advance.schedule_id,
            to_us(advance.expected_next_run_at),
        ),
    )
    if cursor.rowcount != 1:
        return AdvanceResult(advanced=False)
    job = advance.job
    if job is None:
        return AdvanceResult(advanced=True)
    if not advance.allow_overlap:
        live = conn.execute(
            "SELECT 1 FROM jobs WHERE scheduled_job_id = ? AND status IN ('pending', 'running') "
            "LIMIT 1",
            (advance.schedule_id,),
        ).fetchone()
        if live is not None:
            return AdvanceResult(advanced=True, skipped_overlap=True)
    [result] = insert_jobs(conn, [job], now)
    if not result.created:
        return AdvanceResult(advanced=True)
    conn.execute(
        "UPDATE scheduled_jobs SET last_scheduled_at = ? WHERE id = ?",
        (opt_us(job.schedule_fire_at), advance.schedule_id),
    )
    return AdvanceResult(advanced=True, job_id=result.id)


# ---- history and metrics ---------------------------------------------------------------------


def append_logs(conn: sqlite3.Connection, entries: Sequence[NewLogEntry], now: datetime) -> None:
    now_us = to_us(now)
    conn.executemany(
        "INSERT INTO job_logs (job_id, run_id, timestamp, level, message, metadata) "
        "SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?)",
        [
            (
                e.job_id,
                e.run_id,
                now_us,
                e.level,
                e.message,
                None if e.metadata is None else dump_json(e.metadata),
                e.job_id,
            )
            for e in entries
        ],
    )


def get_job_runs(conn: sqlite3.Connection, job_id: str) -> list[JobRun]:
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = ? ORDER BY seq", (job_id,)
    ).fetchall()
    return [run_from_row(row) for row in rows]


def get_job_logs(conn: sqlite3.Connection, job_id: str) -> list[JobLog]:
    rows = conn.execute(
        "SELECT job_id, run_id, timestamp, level, message, metadata FROM job_logs "
        "WHERE job_id = ? ORDER BY timestamp, seq",
        (job_id,),
    ).fetchall()
    return [log_from_row(row) for row in rows]


def get_metrics(conn: sqlite3.Connection) -> Metrics:
    per_type: dict[str, dict[str, float | int | None]] = {}
    for job_type, status, count, dead in conn.execute(
        "SELECT type, status, count(*), sum(dead_lettered) FROM jobs GROUP BY type, status"
    ):
        counts = per_type.setdefault(job_type, {})
        counts[status] = count
        counts["dead_letter"] = int(counts.get("dead_letter") or 0) + int(dead or 0)
    durations: dict[str, tuple[float, int]] = {
        job_type: (total, count)
        for job_type, total, count in conn.execute(
            "SELECT job_type, sum(duration), count(*) FROM job_runs WHERE status = 'completed' "
            "GROUP BY job_type"
        )
    }
    types: dict[str, TypeMetrics] = {}
    for job_type in sorted(set(per_type) | set(durations)):
        counts = per_type.get(job_type, {})
        total, runs = durations.get(job_type, (0.0, 0))
        types[job_type] = TypeMetrics(
            **{k: int(counts.get(k) or 0) for k in _COUNT_FIELDS},
            average_duration=(total / runs) if runs else None,
        )
    all_total = sum(t for t, _ in durations.values())
    all_runs = sum(n for _, n in durations.values())
    return Metrics(
        **{k: sum(getattr(t, k) for t in types.values()) for k in _COUNT_FIELDS},
        average_duration=(all_total / all_runs) if all_runs else None,
        types=types,
    )


_COUNT_FIELDS = ("running", "pending", "completed", "failed", "canceled", "dead_letter")
