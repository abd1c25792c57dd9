"""The job table of the in-memory store: rows, runs and logs, and the indexes that keep every
hot path off a scan of all jobs.

Every status change goes through `JobTable.move`, the one place that keeps the indexes in step
with the rows: the pending queue, the running set and per-type running counts (claim limits),
the unique-key holders and per-schedule active counts (both held only while pending or
running), the finished heaps (purge) and the metric counters. What happens to a claimed job
(claim, renew, complete, fail, release) lives in `claims.py`, on top of this table.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from timecrisis.errors import StorageError
from timecrisis.models import (
    FINISHED_STATUSES,
    FailureKind,
    Job,
    JobLog,
    JobRun,
    JobStatus,
    Metrics,
    RunStatus,
)
from timecrisis.storage._common import (
    dump_json,
    expired_reason,
    job_data_json,
    resolve_expires_at,
    resolve_run_at,
    to_utc,
)
from timecrisis.storage._memory.counters import JobCounters
from timecrisis.storage._memory.order import EnqueueOrder
from timecrisis.storage._memory.queue import PendingQueue
from timecrisis.storage._memory.rows import JobRow, LogRow, RunRow
from timecrisis.storage.base import (
    CancelOutcome,
    InsertResult,
    JobQuery,
    NewJob,
    NewLogEntry,
    PurgeParams,
)

_ACTIVE = frozenset({JobStatus.PENDING, JobStatus.RUNNING})
# (finished_at, seq, version, job_id)
_FinishedEntry = tuple[datetime, int, int, str]


@dataclass(frozen=True, slots=True)
class _PreparedJob:
    """A `NewJob` with everything that can fail already done, so a batch fails before it
    changes anything."""

    job: NewJob
    data_json: str
    run_at: datetime
    expires_at: datetime | None
    fire_at: datetime | None


class JobTable:
    def __init__(self) -> None:
        self.rows: dict[str, JobRow] = {}
        self.runs: dict[str, list[RunRow]] = {}
        self.queue = PendingQueue(self.rows.get)
        self.counters = JobCounters()
        self.running: dict[str, JobRow] = {}
        self.running_by_type: Counter[str] = Counter()
        # Flow control: running jobs per (type, concurrency key), for `key_limits`.
        self.running_by_key: Counter[tuple[str, str]] = Counter()
        self._logs: dict[str, list[LogRow]] = {}
        self._seq = itertools.count(1)
        self._order = EnqueueOrder()
        self._unique_holders: dict[tuple[str, str], str] = {}
        self._active_by_schedule: Counter[str] = Counter()
        self._ticks: dict[tuple[str, datetime], str] = {}
        self._finished: dict[JobStatus, list[_FinishedEntry]] = {s: [] for s in FINISHED_STATUSES}

    # ---- insert --------------------------------------------------------------------------

    def insert(self, jobs: Sequence[NewJob], now: datetime) -> list[InsertResult]:
        """All or none: every check that can fail runs before the first row is written."""
        prepared = [_prepare(job, now) for job in jobs]
        seen: set[str] = set()
        for job in jobs:
            if job.id in self.rows or job.id in seen:
                raise StorageError(f"a job with id {job.id!r} already exists; nothing inserted")
            seen.add(job.id)
        return [self._insert_one(item, now) for item in prepared]

    def _insert_one(self, item: _PreparedJob, now: datetime) -> InsertResult:
        job = item.job
        holder = self._holder(job, item.fire_at)
        if holder is not None:
            return InsertResult(holder, created=False)
        row = JobRow(
            id=job.id,
            seq=next(self._seq),
            type=job.type,
            data_json=item.data_json,
            priority=job.priority,
            max_retries=job.max_retries,
            backoff_strategy=job.backoff_strategy,
            retry_delay=job.retry_delay,
            max_retry_delay=job.max_retry_delay,
            entity_id=job.entity_id,
            unique_key=job.unique_key,
            scheduled_job_id=job.scheduled_job_id,
            schedule_fire_at=item.fire_at,
            run_at=item.run_at,
            expires_at=item.expires_at,
            created_at=now,
            headers=None if job.headers is None else dict(job.headers),
            concurrency_key=job.concurrency_key,
            queue=job.queue,
        )
        self.rows[row.id] = row
        self.runs[row.id] = []
        self._logs[row.id] = []
        self._order.append(row.seq, row.id)
        if row.scheduled_job_id is not None and item.fire_at is not None:
            self._ticks[(row.scheduled_job_id, item.fire_at)] = row.id
        self._take_holds(row)
        self.queue.push(row, now)
        self.counters.add(row)
        return InsertResult(row.id, created=True)

    def _holder(self, job: NewJob, fire_at: datetime | None) -> str | None:
        """The job that makes `job` a duplicate: the one created for the same schedule tick
        (for as long as it exists), or the pending or running one holding the unique key."""
        if job.scheduled_job_id is not None and fire_at is not None:
            tick_job = self._ticks.get((job.scheduled_job_id, fire_at))
            if tick_job is not None:
                return tick_job
        if job.unique_key is not None:
            return self._unique_holders.get((job.type, job.unique_key))
        return None

    # ---- operator actions and maintenance -------------------------------------------------

    def append_logs(self, entries: Sequence[NewLogEntry], now: datetime) -> None:
        rows = [
            LogRow(
                job_id=entry.job_id,
                run_id=entry.run_id,
                timestamp=now,
                level=entry.level,
                message=entry.message,
                metadata_json=None if entry.metadata is None else dump_json(entry.metadata),
            )
            for entry in entries  # encode them all first: a bad one stores none
        ]
        for log in rows:
            # A line for a job that is gone (purged) has nothing to attach to.
            job_logs = self._logs.get(log.job_id)
            if job_logs is not None:
                job_logs.append(log)

    def cancel(self, job_id: str, now: datetime, *, terminate: bool = False) -> CancelOutcome:
        row = self.rows.get(job_id)
        if row is None:
            return "not_found"
        if row.status is JobStatus.PENDING:
            self.move(row, JobStatus.CANCELED, now)
            return "canceled"
        if row.status is JobStatus.RUNNING:
            row.cancel_requested = True
            row.cancel_terminate = row.cancel_terminate or terminate
            return "cancel_requested"
        return "not_cancellable"

    def retry(self, job_id: str, now: datetime) -> bool:
        row = self.rows.get(job_id)
        if row is None or row.status not in (JobStatus.FAILED, JobStatus.CANCELED):
            return False
        if row.unique_key is not None:
            holder = self._unique_holders.get((row.type, row.unique_key))
            if holder is not None and holder != row.id:
                return False  # another job holds the key now: reviving this one would break it
        row.attempts = 0
        row.fail_reason = None
        row.failure_kind = None
        row.run_at = now
        row.worker = None
        row.clear_claim()
        self.move(row, JobStatus.PENDING, now)
        return True

    def expire(self, now: datetime, limit: int) -> list[Job]:
        expired: list[Job] = []
        for row in self.queue.pop_expired(now, limit):
            assert row.expires_at is not None
            row.fail_reason = expired_reason(row.expires_at)
            row.failure_kind = FailureKind.EXPIRED
            self.move(row, JobStatus.FAILED, now, dead_lettered=True)
            expired.append(row.to_record())
        return expired

    def purge(self, params: PurgeParams, now: datetime) -> int:
        unfinished = params.statuses - FINISHED_STATUSES
        if unfinished:
            raise ValueError(f"purge deletes finished jobs only, not {sorted(unfinished)}")
        # "Older than" includes the cutoff itself, so `older_than=0` purges every finished job.
        cutoff = now - params.older_than
        rows = self._finished_until(params.statuses, cutoff)
        # islice stops before pulling one more row, which would pop it off its heap unpurged.
        deleted = 0
        for row in rows if params.limit is None else itertools.islice(rows, params.limit):
            self._delete(row)
            deleted += 1
        return deleted

    def _finished_until(self, statuses: frozenset[JobStatus], cutoff: datetime) -> Iterator[JobRow]:
        """Finished jobs of `statuses` with `finished_at <= cutoff`, oldest first: a merge of
        the per-status heaps."""
        heaps = [self._finished[status] for status in statuses]
        while True:
            best: list[_FinishedEntry] | None = None
            for heap in heaps:
                self._drop_stale_finished(heap)
                if heap and heap[0][0] <= cutoff and (best is None or heap[0] < best[0]):
                    best = heap
            if best is None:
                return
            yield self.rows[heapq.heappop(best)[3]]

    def _drop_stale_finished(self, heap: list[_FinishedEntry]) -> None:
        while heap:
            _, _, version, job_id = heap[0]
            row = self.rows.get(job_id)
            if row is not None and row.version == version:
                return
            heapq.heappop(heap)

    def _delete(self, row: JobRow) -> None:
        self.counters.remove(row)
        for run in self.runs.pop(row.id):
            if run.status is RunStatus.COMPLETED and run.duration_us is not None:
                self.counters.remove_completed_run(row.type, run.duration_us)
        del self._logs[row.id]
        if row.scheduled_job_id is not None and row.schedule_fire_at is not None:
            self._ticks.pop((row.scheduled_job_id, row.schedule_fire_at), None)
        self._order.remove(row.seq)
        del self.rows[row.id]

    # ---- reads ---------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        row = self.rows.get(job_id)
        return None if row is None else row.to_record()

    def page(self, query: JobQuery) -> list[Job]:
        before: int | None = None
        if query.cursor is not None:
            cursor_row = self.rows.get(query.cursor)
            if cursor_row is None:
                return []
            before = cursor_row.seq
        page: list[Job] = []
        if query.limit <= 0:
            return page
        for job_id in self._order.newest_first(before):
            row = self.rows[job_id]
            if _matches(row, query):
                page.append(row.to_record())
                if len(page) >= query.limit:
                    break
        return page

    def run_records(self, job_id: str) -> list[JobRun]:
        return [run.to_record() for run in self.runs.get(job_id, [])]

    def log_records(self, job_id: str) -> list[JobLog]:
        # A stable sort keeps insertion order among equal timestamps.
        logs = sorted(self._logs.get(job_id, []), key=lambda log: log.timestamp)
        return [log.to_record() for log in logs]

    def metrics(self) -> Metrics:
        return self.counters.snapshot()

    def has_active_job_of_schedule(self, schedule_id: str) -> bool:
        return self._active_by_schedule[schedule_id] > 0

    # ---- the one status transition -------------------------------------------------------

    def move(
        self, row: JobRow, status: JobStatus, now: datetime, *, dead_lettered: bool = False
    ) -> None:
        """Change a job's status and every index that depends on it. A finished status sets
        `finished_at = now`; any other clears it."""
        self.counters.remove(row)
        previous = row.status
        if previous is JobStatus.RUNNING:
            del self.running[row.id]
            self.running_by_type[row.type] -= 1
            if row.concurrency_key is not None:
                self.running_by_key[(row.type, row.concurrency_key)] -= 1
        row.status = status
        row.dead_lettered = dead_lettered
        row.finished_at = now if status in FINISHED_STATUSES else None
        row.version += 1  # every index entry made for the previous state is stale now
        if previous in _ACTIVE and status not in _ACTIVE:
            self._drop_holds(row)
        elif previous not in _ACTIVE and status in _ACTIVE:
            self._take_holds(row)
        if status is JobStatus.RUNNING:
            self.running[row.id] = row
            self.running_by_type[row.type] += 1
            if row.concurrency_key is not None:
                self.running_by_key[(row.type, row.concurrency_key)] += 1
        elif status is JobStatus.PENDING:
            self.queue.push(row, now)
        else:
            heapq.heappush(self._finished[status], (now, row.seq, row.version, row.id))
        self.counters.add(row)

    def _take_holds(self, row: JobRow) -> None:
        if row.unique_key is not None:
            self._unique_holders[(row.type, row.unique_key)] = row.id
        if row.scheduled_job_id is not None:
            self._active_by_schedule[row.scheduled_job_id] += 1

    def _drop_holds(self, row: JobRow) -> None:
        if row.unique_key is not None:
            key = (row.type, row.unique_key)
            if self._unique_holders.get(key) == row.id:
                del self._unique_holders[key]
        if row.scheduled_job_id is not None:
            self._active_by_schedule[row.scheduled_job_id] -= 1


def _prepare(job: NewJob, now: datetime) -> _PreparedJob:
    return _PreparedJob(
        job=job,
        data_json=job_data_json(job),
        run_at=resolve_run_at(job, now),
        expires_at=resolve_expires_at(job, now),
        fire_at=None if job.schedule_fire_at is None else to_utc(job.schedule_fire_at),
    )


def _matches(row: JobRow, query: JobQuery) -> bool:
    return (
        (query.status is None or row.status == query.status)
        and (query.type is None or row.type == query.type)
        and (query.entity_id is None or row.entity_id == query.entity_id)
        and (query.dead_lettered is None or row.dead_lettered == query.dead_lettered)
    )
