"""`get_run_stats` and `count_finished_jobs` for the in-memory store: plain passes over the
rows. They serve a metrics scrape or a dashboard chart, not a hot path, so no running totals
are kept for them (unlike `get_metrics`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from timecrisis.models import JobStatus
from timecrisis.storage._memory.rows import JobRow, RunRow, elapsed_microseconds
from timecrisis.storage._run_stats import (
    RunStatsBuilder,
    bucket_microseconds,
    duration_bucket,
    require_aware,
)
from timecrisis.storage.base import FinishedCount, RunStats


def run_stats(runs: Iterable[RunRow]) -> list[RunStats]:
    builder = RunStatsBuilder()
    for run in runs:
        seconds = None if run.duration_us is None else run.duration_us / 1_000_000
        builder.add(
            run.job_type,
            run.status,
            bucket=None if seconds is None else duration_bucket(seconds),
            runs=1,
            retries=1 if run.attempt > 1 else 0,
            duration_sum_us=run.duration_us or 0,
            failure_kind=run.failure_kind,
        )
    return builder.build()


def finished_counts(
    rows: Iterable[JobRow], since: datetime, bucket: timedelta
) -> list[FinishedCount]:
    require_aware(since)
    width = bucket_microseconds(bucket)
    counts: Counter[tuple[int, JobStatus]] = Counter()
    for row in rows:
        if row.finished_at is not None and row.finished_at >= since:
            counts[(elapsed_microseconds(since, row.finished_at) // width, row.status)] += 1
    return [
        FinishedCount(start=since + timedelta(microseconds=index * width), status=status, count=n)
        for (index, status), n in sorted(counts.items())
    ]
