"""`get_run_stats` and `count_finished_jobs` for the PostgreSQL store: `run_stats` reads the run
counters that the statements keep (migration 0009), `count_finished_jobs` the finished-time
index range of its window; the rows are folded by the shared `RunStatsBuilder`.

`fold_counts` moves the committed count deltas into the counters. The metric reads and the lease
reaper call it, never a claim or a completion, so the worker's hot path only appends deltas."""

from __future__ import annotations

from datetime import datetime, timedelta

from timecrisis.models import JobStatus
from timecrisis.storage._common import to_utc
from timecrisis.storage._run_stats import RunStatsBuilder, bucket_microseconds, require_aware
from timecrisis.storage.base import FinishedCount, RunStats
from timecrisis.storage.postgres._db import Conn, Context, fetch_all


async def fold_counts(conn: Conn, ctx: Context) -> None:
    """Fold the committed deltas into the counters, unless another session is folding now (a
    try-lock: this never waits). The reads are exact either way; folding keeps them short."""
    await fetch_all(conn, ctx.queries["fold_counts"], {})


async def get_run_stats(conn: Conn, ctx: Context) -> list[RunStats]:
    await fold_counts(conn, ctx)
    rows = await fetch_all(conn, ctx.queries["run_stats"], {})
    builder = RunStatsBuilder()
    for row in rows:
        builder.add(
            row["job_type"],
            row["status"],
            bucket=row["bucket"],
            runs=int(row["runs"]),
            retries=int(row["retries"]),
            duration_sum_us=int(row["duration_sum_us"]),
            failure_kind=row["failure_kind"],
        )
    return builder.build()


async def count_finished_jobs(
    conn: Conn, ctx: Context, since: datetime, bucket: timedelta
) -> list[FinishedCount]:
    require_aware(since)
    width = bucket_microseconds(bucket)
    since = to_utc(since)
    rows = await fetch_all(
        conn, ctx.queries["count_finished_jobs"], {"since": since, "width": width}
    )
    return [
        FinishedCount(
            start=since + timedelta(microseconds=int(row["bucket"]) * width),
            status=JobStatus(row["status"]),
            count=int(row["n"]),
        )
        for row in rows
    ]
