"""Schedules for the SQLite store: upsert by name, due ticks, and the compare-and-set advance.

`advance_schedule` moves the schedule and inserts the tick's job in one `BEGIN IMMEDIATE`
transaction. Two nodes that both believe they lead are serialised by the write lock: the second
finds `next_run_at` already moved and loses the compare-and-set, and even a job for the same
tick inserted by other means is refused by the unique (scheduled_job_id, schedule_fire_at)
index.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from timecrisis.models import ScheduledJob
from timecrisis.storage._common import dump_json, new_id, schedule_definition_changed
from timecrisis.storage._queries import load_queries
from timecrisis.storage.base import AdvanceResult, DueSchedules, ScheduleAdvance, ScheduleSpec
from timecrisis.storage.sqlite._jobs import insert_jobs
from timecrisis.storage.sqlite._rows import opt_dt, opt_us, schedule_from_row, to_us

Q = load_queries("timecrisis.storage.sqlite")


def upsert_schedule(conn: sqlite3.Connection, spec: ScheduleSpec, now: datetime) -> ScheduledJob:
    now_us = to_us(now)
    existing = conn.execute(Q["lock_schedule_by_name"], (spec.name,)).fetchone()
    if existing is None:
        conn.execute(
            Q["insert_schedule"],
            (
                spec.id or new_id(),
                spec.name,
                spec.type,
                dump_json(spec.data),
                spec.schedule_type,
                spec.schedule_value,
                spec.time_zone,
                spec.enabled is not False,  # a new schedule starts enabled unless told not to
                spec.allow_overlap,
                opt_us(spec.next_run_at),
                now_us,
                now_us,
                *_job_options(spec),
            ),
        )
    else:
        schedule_id, old_type, old_schedule_type, old_value, old_zone, old_data = existing
        # `enabled=None` keeps the flag; the value's text (the same schedule when unchanged,
        # '600s' for '10m'), `allow_overlap` and the job options are always updated.
        conn.execute(
            Q["touch_schedule"],
            (
                spec.enabled,
                spec.schedule_value,
                spec.allow_overlap,
                *_job_options(spec),
                now_us,
                schedule_id,
            ),
        )
        if schedule_definition_changed(
            old_type, old_schedule_type, old_value, old_zone, old_data, spec
        ):
            # A changed definition takes the caller's next_run_at; an unchanged one (a restart
            # registering the same schedule) keeps its tick, so nothing is pushed out or lost.
            conn.execute(
                Q["redefine_schedule"],
                (
                    spec.type,
                    dump_json(spec.data),
                    spec.schedule_type,
                    spec.schedule_value,
                    spec.time_zone,
                    opt_us(spec.next_run_at),
                    schedule_id,
                ),
            )
    schedule = get_schedule(conn, spec.name)
    assert schedule is not None  # written just above, in this transaction
    return schedule


def _job_options(spec: ScheduleSpec) -> tuple[int, int, str, float, float, str]:
    """The options of the jobs the schedule fires, in the column order of `insert_schedule`."""
    return (
        spec.priority,
        spec.max_retries,
        spec.backoff_strategy,
        spec.retry_delay,
        spec.max_retry_delay,
        spec.queue,
    )


def get_schedule(conn: sqlite3.Connection, name: str) -> ScheduledJob | None:
    row = conn.execute(Q["get_schedule"], (name,)).fetchone()
    return None if row is None else schedule_from_row(row)


def list_schedules(conn: sqlite3.Connection) -> list[ScheduledJob]:
    rows = conn.execute(Q["list_schedules"])
    return [schedule_from_row(row) for row in rows]


def set_schedule_enabled(conn: sqlite3.Connection, name: str, enabled: bool, now: datetime) -> bool:
    cursor = conn.execute(Q["set_schedule_enabled"], (enabled, to_us(now), name))
    return cursor.rowcount == 1


def delete_schedule(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(Q["delete_schedule"], (name,)).rowcount == 1


def get_due_schedules(conn: sqlite3.Connection, limit: int, now: datetime) -> DueSchedules:
    now_us = to_us(now)
    rows = conn.execute(Q["due_schedules"], (now_us, max(limit, 0))).fetchall()
    upcoming = conn.execute(Q["next_due_schedule"], (now_us,)).fetchone()[0]
    return DueSchedules(now, [schedule_from_row(row) for row in rows], opt_dt(upcoming))


def advance_schedule(
    conn: sqlite3.Connection, advance: ScheduleAdvance, now: datetime
) -> AdvanceResult:
    moved = conn.execute(
        Q["advance_schedule"],
        (
            opt_us(advance.next_run_at),
            advance.disable,
            to_us(now),
            advance.schedule_id,
            to_us(advance.expected_next_run_at),
        ),
    )
    if moved.rowcount != 1:
        return AdvanceResult(advanced=False)
    job = advance.job
    if job is None:
        return AdvanceResult(advanced=True)
    if not advance.allow_overlap:
        live = conn.execute(Q["schedule_has_live_job"], (advance.schedule_id,)).fetchone()
        if live is not None:
            return AdvanceResult(advanced=True, skipped_overlap=True)
    [inserted] = insert_jobs(conn, [job], now)
    if not inserted.created:  # this tick already has its job
        return AdvanceResult(advanced=True)
    conn.execute(
        Q["mark_scheduled"],
        (opt_us(job.schedule_fire_at), advance.schedule_id),
    )
    return AdvanceResult(advanced=True, job_id=inserted.id)
