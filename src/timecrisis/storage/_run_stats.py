"""What every backend shares to answer `get_run_stats` and `count_finished_jobs`.

The stores aggregate in SQL (or over their rows, in memory) down to one row per
(type, status, duration bucket); `RunStatsBuilder` folds those rows into `RunStats`, so the
histogram's cumulative counts are written once. A lease loss is a failed run whose
`failure_kind` is `lease_expired` (never a match on the error text).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from timecrisis.models import FailureKind, RunStatus
from timecrisis.storage.base import RUN_DURATION_BUCKETS, RunStats

INFINITE_BUCKET = len(RUN_DURATION_BUCKETS)
"""The bucket index of a duration above every bound (Prometheus' `+Inf`)."""


def duration_bucket(seconds: float) -> int:
    """Index of the first bound >= `seconds` (bounds are inclusive), or `INFINITE_BUCKET`."""
    return bisect.bisect_left(RUN_DURATION_BUCKETS, seconds)


def bucket_microseconds(bucket: timedelta) -> int:
    """`bucket` in whole microseconds; a bucket that is not positive is a `ValueError`."""
    micros = bucket // timedelta(microseconds=1)
    if micros <= 0:
        raise ValueError(f"bucket must be a positive duration, got {bucket!r}")
    return micros


def require_aware(since: datetime) -> None:
    if since.tzinfo is None:
        raise ValueError(f"since must be timezone-aware, got {since!r}")


@dataclass(slots=True)
class _Totals:
    runs: int = 0
    retries: int = 0
    failures: Counter[FailureKind] = field(default_factory=Counter)
    duration_count: int = 0
    duration_sum_us: int = 0  # whole microseconds: every store adds them up alike
    per_bucket: list[int] = field(default_factory=lambda: [0] * (INFINITE_BUCKET + 1))


class RunStatsBuilder:
    """Accumulates partial aggregates, then builds the sorted `RunStats` list."""

    def __init__(self) -> None:
        self._totals: dict[tuple[str, RunStatus], _Totals] = {}

    def add(
        self,
        job_type: str,
        status: str,
        *,
        bucket: int | None,
        runs: int,
        retries: int,
        duration_sum_us: int,
        failure_kind: str | None = None,
    ) -> None:
        """`runs` runs of (`job_type`, `status`) whose durations fall in `bucket` (an index as
        `duration_bucket` gives, or None for runs without a duration), all of `failure_kind`
        (None for runs that did not fail), whose durations add up to `duration_sum_us`
        microseconds."""
        run_status = RunStatus(status)
        totals = self._totals.setdefault((job_type, run_status), _Totals())
        totals.runs += runs
        totals.retries += retries
        if failure_kind is not None and run_status is RunStatus.FAILED:
            totals.failures[FailureKind(failure_kind)] += runs
        if bucket is not None:
            totals.duration_count += runs
            totals.duration_sum_us += duration_sum_us
            totals.per_bucket[bucket] += runs

    def build(self) -> list[RunStats]:
        stats: list[RunStats] = []
        for (job_type, status), totals in sorted(self._totals.items()):
            cumulative: list[int] = []
            running_total = 0
            for count in totals.per_bucket[:INFINITE_BUCKET]:
                running_total += count
                cumulative.append(running_total)
            stats.append(
                RunStats(
                    type=job_type,
                    status=status,
                    runs=totals.runs,
                    retries=totals.retries,
                    lease_losses=totals.failures[FailureKind.LEASE_EXPIRED],
                    duration_count=totals.duration_count,
                    duration_sum=totals.duration_sum_us / 1_000_000,
                    duration_buckets=tuple(cumulative),
                    failures=tuple(
                        (kind, totals.failures[kind])
                        for kind in FailureKind
                        if totals.failures[kind]
                    ),
                )
            )
        return stats
