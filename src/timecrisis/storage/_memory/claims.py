"""Claimed jobs in the in-memory store: the claim itself and everything its token allows
(renew, progress, complete, fail, release), plus the reaper's side (expired leases).

Fencing: every operation on a claim first checks, through `_claimed`, that the job is still
running under the same token; a stale token changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from timecrisis.models import FailureKind, Job, JobStatus, RunStatus
from timecrisis.storage._common import decide_failure, lease_expired_error, new_id
from timecrisis.storage._memory.jobs import JobTable
from timecrisis.storage._memory.rates import RateWindows
from timecrisis.storage._memory.rows import JobRow, RunRow
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    FailOutcome,
    Failure,
    RenewResult,
)


class Claims:
    def __init__(self, table: JobTable) -> None:
        self._table = table
        self.rates = RateWindows()  # flow control: the recent claims of rate-limited types

    def claim(
        self, params: ClaimParams, now: datetime, paused: Collection[str] = ()
    ) -> list[ClaimedJob]:
        if params.limit <= 0:
            return []
        table = self._table
        # Cluster-wide limits: running jobs of every worker count against them.
        capacities = {
            job_type: None if limit is None else limit - table.running_by_type[job_type]
            for job_type, limit in params.type_limits.items()
        }
        # Flow control: a full rate-limit window caps its type like a full concurrency limit.
        for job_type, rate in params.rate_limits.items():
            if job_type in capacities:
                room = self.rates.room(job_type, rate, now)
                capacity = capacities[job_type]
                capacities[job_type] = room if capacity is None else min(capacity, room)
        lease_expires_at = now + params.lease_ttl
        claimed: list[ClaimedJob] = []
        admit = _KeyRoom(params.key_limits, table.running_by_key) if params.key_limits else None
        # Flow control: only the queues served, nothing paused (`take` never looks at the rest).
        for row in table.queue.take(now, capacities, params.limit, params.queues, paused, admit):
            run = RunRow(
                id=new_id(),
                job_id=row.id,
                job_type=row.type,
                attempt=row.attempts + 1,
                worker=params.worker,
                started_at=now,
            )
            table.runs[row.id].append(run)
            row.attempts = run.attempt
            row.started_at = now
            row.worker = params.worker
            row.token = new_id()
            row.run_id = run.id
            row.lease_expires_at = lease_expires_at
            row.cancel_requested = False
            row.cancel_terminate = False
            table.move(row, JobStatus.RUNNING, now)
            claimed.append(ClaimedJob(row.to_record(), row.token, run.id, lease_expires_at))
        starts = Counter(c.job.type for c in claimed if c.job.type in params.rate_limits)
        for job_type, count in starts.items():
            self.rates.record(job_type, count, now)
        return claimed

    def renew(self, refs: Sequence[ClaimRef], lease_ttl: timedelta, now: datetime) -> RenewResult:
        valid: set[str] = set()
        cancel_requested: set[str] = set()
        terminate_requested: set[str] = set()
        for ref in refs:
            row = self._claimed(ref)
            if row is None:
                continue
            row.lease_expires_at = now + lease_ttl
            valid.add(row.id)
            if row.cancel_requested:
                cancel_requested.add(row.id)
                if row.cancel_terminate:
                    terminate_requested.add(row.id)
        return RenewResult(
            frozenset(valid), frozenset(cancel_requested), frozenset(terminate_requested)
        )

    def update_progress(self, ref: ClaimRef, percent: float) -> bool:
        row = self._claimed(ref)
        if row is None:
            return False
        row.progress = percent
        self._current_run(row).progress = percent
        return True

    def complete(
        self, completions: Sequence[Completion], result_jsons: Sequence[str], now: datetime
    ) -> list[datetime | None]:
        finished: list[datetime | None] = []
        for completion, result_json in zip(completions, result_jsons, strict=True):
            row = self._claimed(completion.ref)
            if row is None:
                finished.append(None)
                continue
            run = self._current_run(row)
            run.finish(RunStatus.COMPLETED, now)
            run.progress = 100
            assert run.duration_us is not None
            self._table.counters.add_completed_run(row.type, run.duration_us)
            row.result_json = result_json
            if not completion.canceled:
                row.progress = 100
            row.clear_claim()
            status = JobStatus.CANCELED if completion.canceled else JobStatus.COMPLETED
            self._table.move(row, status, now)
            finished.append(now)
        return finished

    def fail(self, failure: Failure, now: datetime) -> FailOutcome | None:
        row = self._claimed(failure.ref)
        if row is None:
            return None
        return self._fail_attempt(
            row,
            failure.error,
            failure.retryable,
            now,
            failure.kind,
            failure.traceback,
            retry_in=failure.retry_in,
        )

    def release(self, refs: Sequence[ClaimRef], now: datetime) -> list[bool]:
        released: list[bool] = []
        for ref in refs:
            row = self._claimed(ref)
            if row is None:
                released.append(False)
                continue
            self._current_run(row).finish(RunStatus.RELEASED, now)
            row.clear_claim()
            if row.cancel_requested:  # cancel is final: it ran, and it ends here
                self._table.move(row, JobStatus.CANCELED, now)
            else:
                row.attempts -= 1  # graceful stop: this attempt is not charged
                row.worker = None
                self._table.move(row, JobStatus.PENDING, now)
            released.append(True)
        return released

    def snooze(self, ref: ClaimRef, delay: timedelta, now: datetime) -> Job | None:
        """`release` with `run_at = now + delay` (the handler raised `Snooze`)."""
        row = self._claimed(ref)
        if row is None:
            return None
        self._current_run(row).finish(RunStatus.RELEASED, now)
        row.clear_claim()
        if row.cancel_requested:  # cancel is final: it ran, and it ends here
            self._table.move(row, JobStatus.CANCELED, now)
        else:
            row.attempts -= 1  # a snooze is not charged
            row.worker = None
            row.run_at = now + delay
            self._table.move(row, JobStatus.PENDING, now)
        return row.to_record()

    def recover_expired_leases(self, now: datetime, limit: int) -> list[FailOutcome]:
        # Running jobs are bounded by the cluster's concurrency, so scanning them is cheap.
        expired = sorted(
            (
                row
                for row in self._table.running.values()
                if row.lease_expires_at is not None and row.lease_expires_at <= now
            ),
            key=lambda row: (row.lease_expires_at, row.seq),
        )[: max(limit, 0)]
        return [
            self._fail_attempt(
                row,
                lease_expired_error(row.worker, row.lease_expires_at),
                True,
                now,
                FailureKind.LEASE_EXPIRED,
                None,
            )
            for row in expired
        ]

    def end_leases_of(self, workers: set[str], now: datetime) -> None:
        """Make the jobs of dead workers recoverable at once instead of at lease expiry (a
        lease that expired earlier keeps its expiry: the reaper reports when it really ended)."""
        for row in self._table.running.values():
            if row.worker in workers and (
                row.lease_expires_at is None or row.lease_expires_at > now
            ):
                row.lease_expires_at = now

    def _claimed(self, ref: ClaimRef) -> JobRow | None:
        """The job if `ref` still holds it, else None."""
        row = self._table.rows.get(ref.job_id)
        if row is None or row.status is not JobStatus.RUNNING or row.token != ref.token:
            return None
        return row

    def _current_run(self, row: JobRow) -> RunRow:
        run = self._table.runs[row.id][-1]  # a claim always appends its run last
        assert run.id == row.run_id
        return run

    def _fail_attempt(
        self,
        row: JobRow,
        error: str,
        retryable: bool,
        now: datetime,
        kind: FailureKind,
        traceback: str | None,
        *,
        retry_in: timedelta | None = None,
    ) -> FailOutcome:
        decision = decide_failure(
            now=now,
            error=error,
            retryable=retryable,
            attempts=row.attempts,
            max_retries=row.max_retries,
            backoff_strategy=row.backoff_strategy,
            retry_delay=row.retry_delay,
            max_retry_delay=row.max_retry_delay,
            expires_at=row.expires_at,
            cancel_requested=row.cancel_requested,
            retry_in=retry_in,
        )
        self._current_run(row).finish(
            RunStatus.FAILED, now, error=error, kind=kind, traceback=traceback
        )
        row.fail_reason = decision.fail_reason
        row.failure_kind = kind
        row.clear_claim()
        if decision.canceled:
            self._table.move(row, JobStatus.CANCELED, now)
        elif decision.will_retry:
            assert decision.run_at is not None
            row.run_at = decision.run_at
            row.worker = None
            self._table.move(row, JobStatus.PENDING, now)
        else:
            self._table.move(row, JobStatus.FAILED, now, dead_lettered=decision.dead_lettered)
        return FailOutcome(row.to_record(), decision.will_retry, error, kind)


class _KeyRoom:
    """Flow control: admits a job unless its concurrency key already has its type's
    `key_limits` jobs running (every worker's) or taken by this claim."""

    def __init__(
        self, key_limits: Mapping[str, int], running: Mapping[tuple[str, str], int]
    ) -> None:
        self._limits = key_limits
        self._running = running
        self._taken: Counter[tuple[str, str]] = Counter()

    def __call__(self, row: JobRow) -> bool:
        cap = self._limits.get(row.type)
        if cap is None or row.concurrency_key is None:
            return True
        key = (row.type, row.concurrency_key)
        if self._running.get(key, 0) + self._taken[key] >= cap:
            return False
        self._taken[key] += 1
        return True
