"""Run history, job logs and metrics for the SQLite store.

`get_metrics` and `get_run_stats` read the counters that the writes keep (migration 0009,
`_counts`: `job_counts`, `run_counts`, a few rows per job type), never the jobs or the runs
themselves; `count_finished_jobs` reads the `jobs_finished` index range of its window only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from timecrisis.models import JobLog, JobRun, JobStatus, Metrics, QueueMetrics, TypeMetrics
from timecrisis.storage._common import average_seconds, dump_json
from timecrisis.storage._queries import load_queries
from timecrisis.storage._run_stats import RunStatsBuilder, bucket_microseconds, require_aware
from timecrisis.storage.base import FinishedCount, NewLogEntry, RunStats
from timecrisis.storage.sqlite._rows import from_us, log_from_row, run_from_row, to_us

Q = load_queries("timecrisis.storage.sqlite")


def append_logs(conn: sqlite3.Connection, entries: Sequence[NewLogEntry], now: datetime) -> None:
    """In order, all stamped `now`. A line for a job that no longer exists (purged while its
    handler still logged) has nothing to attach to and is dropped, as in every backend."""
    now_us = to_us(now)
    rows = [  # encode every entry first: one bad metadata value stores none
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
    ]
    conn.executemany(Q["append_logs"], rows)


def get_job_runs(conn: sqlite3.Connection, job_id: str) -> list[JobRun]:
    rows = conn.execute(Q["get_job_runs"], (job_id,))
    return [run_from_row(row) for row in rows]


def get_job_logs(conn: sqlite3.Connection, job_id: str) -> list[JobLog]:
    rows = conn.execute(Q["get_job_logs"], (job_id,))
    return [log_from_row(row) for row in rows]


_COUNTED = ("running", "pending", "completed", "failed", "canceled", "dead_letter")


def get_metrics(conn: sqlite3.Connection) -> Metrics:
    counts: dict[str, dict[str, int]] = {}
    for job_type, status, count, dead in conn.execute(Q["job_counts"]):
        per_type = counts.setdefault(job_type, dict.fromkeys(_COUNTED, 0))
        per_type[status] = count
        per_type["dead_letter"] += int(dead)
    durations: dict[str, tuple[int, int]] = {
        job_type: (int(total_us), runs)
        for job_type, total_us, runs in conn.execute(Q["run_durations"])
    }
    types: dict[str, TypeMetrics] = {}
    for job_type in sorted(counts.keys() | durations.keys()):
        total_us, runs = durations.get(job_type, (0, 0))
        types[job_type] = TypeMetrics(
            **counts.get(job_type, dict.fromkeys(_COUNTED, 0)),
            average_duration=average_seconds(total_us, runs),
        )
    all_total = sum(total for total, _ in durations.values())
    all_runs = sum(runs for _, runs in durations.values())
    return Metrics(
        **{name: sum(getattr(t, name) for t in types.values()) for name in _COUNTED},
        average_duration=average_seconds(all_total, all_runs),
        types=types,
        queues=_queue_metrics(conn),
    )


def _queue_metrics(conn: sqlite3.Connection) -> dict[str, QueueMetrics]:
    """Pending and running counts per queue (docs/flow-control.md)."""
    counts: dict[str, dict[str, int]] = {}
    for queue, status, count in conn.execute(Q["queue_counts"]):
        counts.setdefault(queue, {})[status] = count
    return {queue: QueueMetrics(**counts[queue]) for queue in sorted(counts)}


def get_run_stats(conn: sqlite3.Connection) -> list[RunStats]:
    builder = RunStatsBuilder()
    rows = conn.execute(Q["get_run_stats"])
    for job_type, status, bucket, kind, runs, retries, duration_sum_us in rows:
        builder.add(
            job_type,
            status,
            bucket=bucket,
            runs=runs,
            retries=int(retries),
            duration_sum_us=int(duration_sum_us),
            failure_kind=kind,
        )
    return builder.build()


def count_finished_jobs(
    conn: sqlite3.Connection, since: datetime, bucket: timedelta
) -> list[FinishedCount]:
    require_aware(since)
    width = bucket_microseconds(bucket)
    since_us = to_us(since)
    rows = conn.execute(Q["count_finished_jobs"], (since_us, width, since_us))
    return [
        FinishedCount(start=from_us(since_us + index * width), status=JobStatus(status), count=n)
        for index, status, n in rows
    ]
