"""Running totals behind `get_metrics`, kept up to date on every change so metrics never walk
the jobs. Durations are summed in whole microseconds: integer sums stay exact when purged runs
are subtracted again, where float sums would drift."""

from __future__ import annotations

from collections import Counter

from timecrisis.models import JobStatus, Metrics, QueueMetrics, TypeMetrics
from timecrisis.storage._common import average_seconds
from timecrisis.storage._memory.rows import JobRow


class JobCounters:
    def __init__(self) -> None:
        self._by_status: Counter[tuple[str, JobStatus]] = Counter()
        self._dead_letters: Counter[str] = Counter()
        self._jobs: Counter[str] = Counter()
        self._duration_sum_us: Counter[str] = Counter()
        self._duration_count: Counter[str] = Counter()
        self._live_by_queue: Counter[tuple[str, JobStatus]] = Counter()  # pending and running

    def add(self, row: JobRow) -> None:
        self._change(row, 1)

    def remove(self, row: JobRow) -> None:
        self._change(row, -1)

    def add_completed_run(self, job_type: str, duration_us: int) -> None:
        self._duration_sum_us[job_type] += duration_us
        self._duration_count[job_type] += 1

    def remove_completed_run(self, job_type: str, duration_us: int) -> None:
        self._duration_sum_us[job_type] -= duration_us
        self._duration_count[job_type] -= 1

    def snapshot(self) -> Metrics:
        types = {
            job_type: self._type_metrics(job_type)
            for job_type in sorted(t for t, n in self._jobs.items() if n > 0)
        }
        total_runs = sum(self._duration_count.values())
        total_us = sum(self._duration_sum_us.values())
        return Metrics(
            **{status: sum(getattr(m, status) for m in types.values()) for status in _COUNTS},
            average_duration=average_seconds(total_us, total_runs),
            types=types,
            queues=self._queue_metrics(),
        )

    def _change(self, row: JobRow, step: int) -> None:
        self._by_status[(row.type, row.status)] += step
        self._jobs[row.type] += step
        if row.status is JobStatus.FAILED and row.dead_lettered:
            self._dead_letters[row.type] += step
        if row.status in _LIVE:
            self._live_by_queue[(row.queue, row.status)] += step

    def _queue_metrics(self) -> dict[str, QueueMetrics]:
        names = sorted({queue for (queue, _), n in self._live_by_queue.items() if n > 0})
        return {
            queue: QueueMetrics(
                running=self._live_by_queue[(queue, JobStatus.RUNNING)],
                pending=self._live_by_queue[(queue, JobStatus.PENDING)],
            )
            for queue in names
        }

    def _type_metrics(self, job_type: str) -> TypeMetrics:
        return TypeMetrics(
            running=self._by_status[(job_type, JobStatus.RUNNING)],
            pending=self._by_status[(job_type, JobStatus.PENDING)],
            completed=self._by_status[(job_type, JobStatus.COMPLETED)],
            failed=self._by_status[(job_type, JobStatus.FAILED)],
            canceled=self._by_status[(job_type, JobStatus.CANCELED)],
            dead_letter=self._dead_letters[job_type],
            average_duration=average_seconds(
                self._duration_sum_us[job_type], self._duration_count[job_type]
            ),
        )


_LIVE = frozenset({JobStatus.PENDING, JobStatus.RUNNING})
_COUNTS = ("running", "pending", "completed", "failed", "canceled", "dead_letter")
