"""`/metrics`: Prometheus' text format, read from the store at scrape time.

Every number comes from the store, never from this process, so every dashboard replica reports
the same cluster-wide values and a worker's restart loses nothing. The route reads one
snapshot (four store calls), and a `Collector` over that snapshot is registered in a fresh
`CollectorRegistry` per scrape: nothing goes into prometheus_client's global `REGISTRY`, so
mounting the dashboard never clashes with an application's own metrics.

The run metrics (runs, claims, retries, lease losses, the duration histogram) are totals over
the run history the store keeps, and the leader prunes finished jobs older than
`job_retention` with their runs. Totals that can go down are gauges: exposed as counters,
every pruning slice would look like a counter reset to `rate()` and show as a spike of the
whole total. Throughput comes from `timecrisis_jobs_finished_5m` instead: the jobs whose
`finished_at` falls in the last five minutes of the store's clock, which pruning never
touches (it removes jobs finished `job_retention` ago).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from timecrisis.models import JobStatus, Metrics, RunStatus, WorkerInfo
from timecrisis.storage.base import (
    LEADER_LOCK,
    RUN_DURATION_BUCKETS,
    FinishedCount,
    JobStorage,
    LockInfo,
    RunStats,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus version reads."""

_JOB_STATUSES = [status.value for status in JobStatus]
_FINISHED = ("completed", "failed", "canceled")
RECENT = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    metrics: Metrics
    run_stats: list[RunStats]
    workers: list[WorkerInfo]
    leader: LockInfo | None
    finished_recently: list[FinishedCount]  # jobs finished in the last `RECENT`
    paused: tuple[str, ...] = ()  # flow control: the paused job types and queues


async def read_snapshot(storage: JobStorage) -> StoreSnapshot:
    now = await storage.now()
    metrics, run_stats, workers, leader, finished, paused = await asyncio.gather(
        storage.get_metrics(),
        storage.get_run_stats(),
        storage.list_workers(),
        storage.get_lock(LEADER_LOCK),
        storage.count_finished_jobs(now - RECENT, RECENT),
        storage.list_paused(),
    )
    return StoreSnapshot(metrics, run_stats, workers, leader, finished, tuple(paused))


class StoreCollector:
    """A prometheus_client collector over one `StoreSnapshot`."""

    def __init__(self, snapshot: StoreSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._job_counts()
        yield from self._flow_control()
        yield from self._runs()
        yield from self._workers()

    def _job_counts(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "timecrisis_jobs", "Jobs in the store, by type and status.", labels=["type", "status"]
        )
        dead = GaugeMetricFamily(
            "timecrisis_dead_letter_jobs",
            "Jobs in the dead-letter queue (failed for good), by type.",
            labels=["type"],
        )
        for job_type, counts in sorted(self._snapshot.metrics.types.items()):
            for status in _JOB_STATUSES:
                jobs.add_metric([job_type, status], getattr(counts, status))
            dead.add_metric([job_type], counts.dead_letter)
        recent = GaugeMetricFamily(
            "timecrisis_jobs_finished_5m",
            "Jobs that finished in the last 5 minutes (store clock), by final status: "
            "throughput is this over 300 s.",
            labels=["status"],
        )
        totals: Counter[str] = Counter()
        for count in self._snapshot.finished_recently:
            totals[count.status.value] += count.count
        for status in _FINISHED:
            recent.add_metric([status], totals[status])
        yield jobs
        yield dead
        yield recent

    def _flow_control(self) -> Iterator[Metric]:
        """Per queue, so a queue that no worker serves shows its pending jobs piling up while
        none runs; and what is paused (docs/flow-control.md)."""
        queues = GaugeMetricFamily(
            "timecrisis_queue_jobs",
            "Pending and running jobs, by queue.",
            labels=["queue", "status"],
        )
        for queue, counts in sorted(self._snapshot.metrics.queues.items()):
            queues.add_metric([queue, "pending"], counts.pending)
            queues.add_metric([queue, "running"], counts.running)
        paused = GaugeMetricFamily(
            "timecrisis_paused",
            "1 for each paused job type or queue (its jobs are not claimed until resumed).",
            labels=["name"],
        )
        for name in self._snapshot.paused:
            paused.add_metric([name], 1)
        yield queues
        yield paused

    def _runs(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "timecrisis_job_runs",
            "Runs (attempts) the store holds, by job type and run status.",
            labels=["type", "status"],
        )
        claims = GaugeMetricFamily(
            "timecrisis_job_claims",
            "Claims the store holds a run for (every claim opens one run), by job type.",
            labels=["type"],
        )
        retries = GaugeMetricFamily(
            "timecrisis_job_retries",
            "Runs that were automatic retries (attempt > 1), by job type.",
            labels=["type"],
        )
        lease_losses = GaugeMetricFamily(
            "timecrisis_job_lease_losses",
            "Runs failed because their lease expired (worker died or lost the store).",
            labels=["type"],
        )
        failures = GaugeMetricFamily(
            "timecrisis_job_failures",
            "Failed runs the store holds, by job type and failure kind (error, timeout, "
            "lease_expired, crashed, non_retryable, canceled).",
            labels=["type", "kind"],
        )
        durations = GaugeHistogramMetricFamily(
            "timecrisis_job_run_duration_seconds",
            "Durations of the finished runs the store holds, by job type and run status.",
            labels=["type", "status"],
        )
        per_type: dict[str, list[RunStats]] = {}
        for stats in self._snapshot.run_stats:
            per_type.setdefault(stats.type, []).append(stats)
            runs.add_metric([stats.type, stats.status.value], stats.runs)
            for kind, count in stats.failures:
                failures.add_metric([stats.type, kind.value], count)
            if stats.status is not RunStatus.RUNNING:
                buckets = [
                    (_bound(bound), count)
                    for bound, count in zip(
                        RUN_DURATION_BUCKETS, stats.duration_buckets, strict=True
                    )
                ]
                buckets.append(("+Inf", stats.duration_count))
                durations.add_metric(
                    [stats.type, stats.status.value], buckets, gsum_value=stats.duration_sum
                )
        for job_type, entries in sorted(per_type.items()):
            claims.add_metric([job_type], sum(s.runs for s in entries))
            retries.add_metric([job_type], sum(s.retries for s in entries))
            lease_losses.add_metric([job_type], sum(s.lease_losses for s in entries))
        yield from (runs, claims, retries, lease_losses, failures, durations)

    def _workers(self) -> Iterator[Metric]:
        leader_owner = self._snapshot.leader.owner if self._snapshot.leader else None
        yield GaugeMetricFamily(
            "timecrisis_leader_elected",
            "1 while some worker holds the leader lease, else 0.",
            value=1 if leader_owner is not None else 0,
        )
        yield GaugeMetricFamily(
            "timecrisis_workers",
            "Workers registered in the store.",
            value=len(self._snapshot.workers),
        )
        is_leader = GaugeMetricFamily(
            "timecrisis_worker_is_leader",
            "1 for the worker that holds the leader lease, else 0.",
            labels=["worker"],
        )
        running = GaugeMetricFamily(
            "timecrisis_worker_running_jobs",
            "Jobs each worker ran at its last heartbeat.",
            labels=["worker"],
        )
        heartbeat = GaugeMetricFamily(
            "timecrisis_worker_last_heartbeat_timestamp_seconds",
            "When each worker last reported in (Unix time).",
            labels=["worker"],
        )
        for worker in self._snapshot.workers:
            is_leader.add_metric([worker.name], 1 if worker.name == leader_owner else 0)
            running.add_metric([worker.name], worker.running)
            heartbeat.add_metric([worker.name], worker.last_heartbeat.timestamp())
        yield from (is_leader, running, heartbeat)


def _bound(bound: float) -> str:
    # Prometheus' own float formatting for `le`, e.g. "0.005", "1.0", "3600.0".
    return repr(float(bound))


def exposition(snapshot: StoreSnapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(snapshot))
    return generate_latest(registry)
