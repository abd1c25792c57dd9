"""Locks, workers, schedules, run history and metrics for the PostgreSQL store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from timecrisis.models import (
    JobLog,
    JobRun,
    Metrics,
    QueueMetrics,
    ScheduledJob,
    TypeMetrics,
    WorkerInfo,
)
from timecrisis.storage._common import (
    average_seconds,
    canonical_json,
    dump_json,
    new_id,
    schedule_definition_changed,
    to_utc,
)
from timecrisis.storage.base import (
    DEFAULT_WORKER_TTL,
    AdvanceResult,
    DueSchedules,
    LockInfo,
    NewLogEntry,
    ScheduleAdvance,
    ScheduleSpec,
)
from timecrisis.storage.postgres import _stats as stats
from timecrisis.storage.postgres._db import Conn, Context, fetch_all, fetch_one, fetch_value
from timecrisis.storage.postgres._jobs import insert_jobs
from timecrisis.storage.postgres._rows import (
    log_from_row,
    opt_utc,
    run_from_row,
    schedule_from_row,
    utc,
    worker_from_row,
)

_COUNT_FIELDS = ("running", "pending", "completed", "failed", "canceled", "dead_letter")

# ---- locks -------------------------------------------------------------------------------------


async def acquire_lock(
    conn: Conn, ctx: Context, name: str, owner: str, ttl: timedelta, now: datetime | None
) -> str | None:
    token = new_id()
    row = await fetch_one(
        conn,
        ctx.queries["acquire_lock"],
        {"now": now, "name": name, "owner": owner, "token": token, "ttl": ttl},
    )
    return None if row is None else token


async def renew_lock(
    conn: Conn, ctx: Context, name: str, token: str, ttl: timedelta, now: datetime | None
) -> bool:
    cur = await conn.execute(
        ctx.queries["renew_lock"], {"now": now, "ttl": ttl, "name": name, "token": token}
    )
    return cur.rowcount == 1


async def release_lock(conn: Conn, ctx: Context, name: str, token: str) -> bool:
    cur = await conn.execute(ctx.queries["release_lock"], {"name": name, "token": token})
    return cur.rowcount == 1


async def get_lock(conn: Conn, ctx: Context, name: str, now: datetime | None) -> LockInfo | None:
    row = await fetch_one(conn, ctx.queries["get_lock"], {"now": now, "name": name})
    if row is None:
        return None
    return LockInfo(row["name"], row["owner"], utc(row["expires_at"]), utc(row["acquired_at"]))


# ---- workers -----------------------------------------------------------------------------------


async def heartbeat_worker(
    conn: Conn,
    ctx: Context,
    name: str,
    running: int,
    is_leader: bool,
    ttl: timedelta,
    now: datetime | None,
) -> None:
    await conn.execute(
        ctx.queries["heartbeat_worker"],
        {"now": now, "name": name, "leader": is_leader, "running": running, "ttl": ttl},
    )


async def remove_worker(conn: Conn, ctx: Context, name: str) -> None:
    await conn.execute(ctx.queries["remove_worker"], {"name": name})


async def list_workers(conn: Conn, ctx: Context) -> list[WorkerInfo]:
    return [worker_from_row(row) for row in await fetch_all(conn, ctx.queries["list_workers"], {})]


async def prune_workers(conn: Conn, ctx: Context, now: datetime | None) -> list[str]:
    rows = await fetch_all(
        conn, ctx.queries["prune_workers"], {"now": now, "default_ttl": DEFAULT_WORKER_TTL}
    )
    return [row["name"] for row in rows]


# ---- schedules ---------------------------------------------------------------------------------


async def upsert_schedule(
    conn: Conn, ctx: Context, spec: ScheduleSpec, now: datetime | None
) -> ScheduledJob:
    """Inside a transaction: the schedule row is locked from the comparison to the write."""
    args: dict[str, Any] = {
        "now": now,
        "name": spec.name,
        "type": spec.type,
        "data": canonical_json(spec.data),
        "kind": spec.schedule_type,
        "value": spec.schedule_value,
        "zone": spec.time_zone,
        "overlap": spec.allow_overlap,
        "next": None if spec.next_run_at is None else to_utc(spec.next_run_at),
        "priority": spec.priority,
        "max_retries": spec.max_retries,
        "backoff": spec.backoff_strategy,
        "retry_delay": spec.retry_delay,
        "max_retry_delay": spec.max_retry_delay,
        "queue": spec.queue,
    }
    row = await fetch_one(conn, ctx.queries["lock_schedule_by_name"], {"name": spec.name})
    if row is None:
        created = await fetch_one(
            conn,
            ctx.queries["insert_schedule"],
            {**args, "id": spec.id or new_id(), "enabled": spec.enabled is not False},
        )
        if created is None:  # a concurrent registration of this name won: update its row
            row = await fetch_one(conn, ctx.queries["lock_schedule_by_name"], {"name": spec.name})
    if row is not None:
        changed = schedule_definition_changed(
            row["type"],
            row["schedule_type"],
            row["schedule_value"],
            row["time_zone"],
            row["data"],
            spec,
        )
        enabled = row["enabled"] if spec.enabled is None else spec.enabled
        statement = "redefine_schedule" if changed else "touch_schedule"
        await conn.execute(ctx.queries[statement], {**args, "id": row["id"], "enabled": enabled})
    result = await get_schedule(conn, ctx, spec.name)
    assert result is not None
    return result


async def get_schedule(conn: Conn, ctx: Context, name: str) -> ScheduledJob | None:
    row = await fetch_one(conn, ctx.queries["get_schedule"], {"name": name})
    return None if row is None else schedule_from_row(row)


async def list_schedules(conn: Conn, ctx: Context) -> list[ScheduledJob]:
    rows = await fetch_all(conn, ctx.queries["list_schedules"], {})
    return [schedule_from_row(row) for row in rows]


async def set_schedule_enabled(
    conn: Conn, ctx: Context, name: str, enabled: bool, now: datetime | None
) -> bool:
    cur = await conn.execute(
        ctx.queries["set_schedule_enabled"], {"now": now, "enabled": enabled, "name": name}
    )
    return cur.rowcount == 1


async def delete_schedule(conn: Conn, ctx: Context, name: str) -> bool:
    cur = await conn.execute(ctx.queries["delete_schedule"], {"name": name})
    return cur.rowcount == 1


async def get_due_schedules(
    conn: Conn, ctx: Context, limit: int, now: datetime | None
) -> DueSchedules:
    rows = await fetch_all(conn, ctx.queries["due_schedules"], {"now": now, "limit": limit})
    first = rows[0]
    due = [schedule_from_row(row) for row in rows if row["id"] is not None]
    return DueSchedules(utc(first["now_"]), due, opt_utc(first["next_due_"]))


async def advance_schedule(
    conn: Conn, ctx: Context, advance: ScheduleAdvance, now: datetime | None
) -> AdvanceResult:
    """Inside a transaction: compare and set, then maybe insert the tick's job."""
    moved = await fetch_one(
        conn,
        ctx.queries["advance_schedule"],
        {
            "now": now,
            "next": None if advance.next_run_at is None else to_utc(advance.next_run_at),
            "disable": advance.disable,
            "id": advance.schedule_id,
            "expected": to_utc(advance.expected_next_run_at),
        },
    )
    if moved is None:
        return AdvanceResult(advanced=False)
    job = advance.job
    if job is None:
        return AdvanceResult(advanced=True)
    if not advance.allow_overlap and await fetch_value(
        conn, ctx.queries["schedule_has_live_job"], {"id": advance.schedule_id}
    ):
        return AdvanceResult(advanced=True, skipped_overlap=True)
    [result] = await insert_jobs(conn, ctx, [job], now)
    if not result.created:  # the tick's job exists already: the store refuses a second
        return AdvanceResult(advanced=True)
    await conn.execute(
        ctx.queries["mark_scheduled"],
        {"fire_at": job.schedule_fire_at, "id": advance.schedule_id},
    )
    return AdvanceResult(advanced=True, job_id=result.id)


# ---- history and metrics -----------------------------------------------------------------------


async def append_logs(
    conn: Conn, ctx: Context, entries: Sequence[NewLogEntry], now: datetime | None
) -> None:
    await conn.execute(
        ctx.queries["append_logs"],
        {
            "now": now,
            "jobs": [e.job_id for e in entries],
            "runs": [e.run_id for e in entries],
            "levels": [e.level for e in entries],
            "messages": [e.message for e in entries],
            "metadata": [None if e.metadata is None else dump_json(e.metadata) for e in entries],
        },
    )


async def get_job_runs(conn: Conn, ctx: Context, job_id: str) -> list[JobRun]:
    rows = await fetch_all(conn, ctx.queries["get_job_runs"], {"id": job_id})
    return [run_from_row(row) for row in rows]


async def get_job_logs(conn: Conn, ctx: Context, job_id: str) -> list[JobLog]:
    rows = await fetch_all(conn, ctx.queries["get_job_logs"], {"id": job_id})
    return [log_from_row(row) for row in rows]


async def get_metrics(conn: Conn, ctx: Context) -> Metrics:
    await stats.fold_counts(conn, ctx)
    per_type: dict[str, dict[str, int]] = {}
    for row in await fetch_all(conn, ctx.queries["job_counts"], {}):
        counts = per_type.setdefault(row["type"], {})
        counts[row["status"]] = int(row["total"])
        counts["dead_letter"] = counts.get("dead_letter", 0) + int(row["dead"])
    durations = {
        row["job_type"]: (int(row["total_us"] or 0), int(row["runs"]))
        for row in await fetch_all(conn, ctx.queries["run_durations"], {})
    }
    types: dict[str, TypeMetrics] = {}
    for job_type in sorted(set(per_type) | set(durations)):
        counts = per_type.get(job_type, {})
        total_us, runs = durations.get(job_type, (0, 0))
        types[job_type] = TypeMetrics(
            **{k: counts.get(k, 0) for k in _COUNT_FIELDS},
            average_duration=average_seconds(total_us, runs),
        )
    all_total = sum(total for total, _ in durations.values())
    all_runs = sum(runs for _, runs in durations.values())
    return Metrics(
        **{k: sum(getattr(t, k) for t in types.values()) for k in _COUNT_FIELDS},
        average_duration=average_seconds(all_total, all_runs),
        types=types,
        queues=await _queue_metrics(conn, ctx),
    )


async def _queue_metrics(conn: Conn, ctx: Context) -> dict[str, QueueMetrics]:
    """Pending and running counts per queue (docs/flow-control.md)."""
    counts: dict[str, dict[str, int]] = {}
    for row in await fetch_all(conn, ctx.queries["queue_counts"], {}):
        counts.setdefault(row["queue"], {})[row["status"]] = int(row["total"])
    return {queue: QueueMetrics(**counts[queue]) for queue in sorted(counts)}


# ---- flow control: pauses ---------------------------------------------------------------------


async def pause(conn: Conn, ctx: Context, name: str, now: datetime | None) -> bool:
    return await fetch_one(conn, ctx.queries["pause"], {"name": name, "now": now}) is not None


async def resume(conn: Conn, ctx: Context, name: str) -> bool:
    row = await fetch_one(conn, ctx.queries["resume"], {"name": name, "channel": ctx.channel})
    return row is not None


async def list_paused(conn: Conn, ctx: Context) -> list[str]:
    return [row["name"] for row in await fetch_all(conn, ctx.queries["list_paused"], {})]
