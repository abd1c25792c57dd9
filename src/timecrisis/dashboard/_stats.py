"""The Metrics page: the numbers `/metrics` gives Prometheus, for a person, inside the
dashboard's frame. One `StoreSnapshot` (the reads of a scrape, `read_snapshot`) is summarised
here; the template only lays the numbers out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from timecrisis.dashboard._metrics import RECENT, StoreSnapshot
from timecrisis.models import FailureKind, JobStatus, RunStatus, TypeMetrics
from timecrisis.storage.base import RUN_DURATION_BUCKETS, RunStats

PERCENTILE = 0.95


@dataclass(frozen=True, slots=True)
class TypeStats:
    name: str
    counts: TypeMetrics
    runs: int  # every claim opened one
    retries: int
    lease_losses: int
    failures: dict[str, int]  # failed runs by failure kind, kinds with none left out
    p95_at_most: float | None  # seconds: the histogram bucket the 95th percentile falls in


@dataclass(frozen=True, slots=True)
class StatsView:
    totals: TypeMetrics  # counts by status over every type, and the average duration
    queue_depth: int  # pending jobs: due now or later
    finished_recently: dict[str, int]  # completed, failed, canceled in the last `RECENT`
    per_minute: float  # jobs completed per minute over the last `RECENT`
    recent_minutes: int
    workers: int
    running_on_workers: int  # as the workers last reported it
    leader: str | None
    types: list[TypeStats]
    failures: dict[str, int]  # failed runs by kind, every type together


def p95_bound(completed: list[RunStats]) -> float | None:
    """The upper bound of the bucket that holds the 95th percentile of the completed runs'
    durations (what Prometheus' `histogram_quantile` would interpolate within), None when
    there is no run or it falls past the last bound."""
    count = sum(s.duration_count for s in completed)
    if count == 0:
        return None
    wanted = PERCENTILE * count
    for index, bound in enumerate(RUN_DURATION_BUCKETS):
        if sum(s.duration_buckets[index] for s in completed) >= wanted:
            return bound
    return None


def _type_stats(name: str, counts: TypeMetrics, stats: list[RunStats]) -> TypeStats:
    failures: Counter[str] = Counter()
    for entry in stats:
        for kind, count in entry.failures:
            failures[kind.value] += count
    return TypeStats(
        name=name,
        counts=counts,
        runs=sum(s.runs for s in stats),
        retries=sum(s.retries for s in stats),
        lease_losses=sum(s.lease_losses for s in stats),
        failures=_in_kind_order(failures),
        p95_at_most=p95_bound([s for s in stats if s.status is RunStatus.COMPLETED]),
    )


def _in_kind_order(counts: Counter[str]) -> dict[str, int]:
    return {kind.value: counts[kind.value] for kind in FailureKind if counts[kind.value]}


def summarise(snapshot: StoreSnapshot) -> StatsView:
    metrics = snapshot.metrics
    by_type: dict[str, list[RunStats]] = {}
    for stats in snapshot.run_stats:
        by_type.setdefault(stats.type, []).append(stats)
    names = sorted(set(metrics.types) | set(by_type))
    types = [_type_stats(n, metrics.types.get(n, TypeMetrics()), by_type.get(n, [])) for n in names]
    finished: Counter[str] = Counter()
    for count in snapshot.finished_recently:
        finished[count.status.value] += count.count
    failures: Counter[str] = Counter()
    for entry in types:
        failures.update(entry.failures)
    minutes = int(RECENT.total_seconds() // 60)
    finished_statuses = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)
    return StatsView(
        totals=metrics,
        queue_depth=metrics.pending,
        finished_recently={s.value: finished[s.value] for s in finished_statuses},
        per_minute=finished[JobStatus.COMPLETED.value] / minutes,
        recent_minutes=minutes,
        workers=len(snapshot.workers),
        running_on_workers=sum(w.running for w in snapshot.workers),
        leader=snapshot.leader.owner if snapshot.leader else None,
        types=types,
        failures=_in_kind_order(failures),
    )
