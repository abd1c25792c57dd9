"""`Store`: the one facade over every engine. It owns what is the same on all of them, so
each rule is written once:

- the **wake-up policy**: which writes wake this process's listeners (`_WAKEUP RULES` below),
  through the `WakeupHub` it owns, and starting/stopping the engine's cross-process
  listening (`RemoteWakeups`) as the first listener arrives and the last one leaves;
- the **trivial inputs**: an empty batch, a claim with no room or no types, is answered here
  without a round trip to the engine;
- the **declared capabilities** (`StoreCapabilities`): `insert_jobs(connection=)` on a store
  without transactional inserts is a `TypeError` here; `complete_and_claim` reaches an engine
  that declares it, with its trivial cases answered here.

An engine (`Backend`) does only the storage work: each of its methods is one atomic operation
with the fields its `JobStorage` twin writes (base.py lists them), on inputs that are never
trivial. The cross-process half of a wake-up stays in the engine, because it is part of its
write: PostgreSQL's `pg_notify` inside the insert, release or retry statement (so it is sent
on commit), SQLite's `data_version`, which every commit moves.

Wake-up rules (the in-process half; tests/storage/test_wakeups.py pins each):
- `insert_jobs` that created a job (not one inside the caller's transaction: that wakes
  listeners through the engine's notification, once the caller commits);
- `retry_job` that revived a job;
- `fail_job` and `recover_expired_leases` whose outcome will retry;
- `release_jobs` that gave a job back (or ended it canceled: a hint costs a poll);
- `snooze_job` with no delay that left the job pending (due at once: another worker may take
  it now);
- `advance_schedule` that inserted the tick's job;
- `resume` that lifted a pause (its jobs may be claimable at once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from timecrisis._bounds import check_flow_name
from timecrisis.models import Job, JobLog, JobRun, JobStatus, Metrics, ScheduledJob, WorkerInfo
from timecrisis.rate_limits import RateLimit
from timecrisis.storage._wakeups import WakeupHub
from timecrisis.storage.base import (
    DEFAULT_WORKER_TTL,
    AdvanceResult,
    CancelOutcome,
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    DueSchedules,
    FailOutcome,
    Failure,
    FinishedCount,
    InsertResult,
    JobQuery,
    LockInfo,
    NewJob,
    NewLogEntry,
    PurgeParams,
    RenewResult,
    RunStats,
    ScheduleAdvance,
    ScheduleSpec,
    StoreCapabilities,
    WakeupCallback,
)


class Backend(Protocol):
    """One engine's storage work, behind `Store`. The methods are `JobStorage`'s (same
    semantics, same fields written) minus what the facade owns: no wake-ups, no listener
    bookkeeping, no `connection=`, and batches that are never empty."""

    async def init(self) -> None: ...
    async def close(self) -> None: ...
    async def now(self) -> datetime: ...

    async def insert_jobs(self, jobs: Sequence[NewJob]) -> list[InsertResult]: ...
    async def cancel_job(self, job_id: str, terminate: bool) -> CancelOutcome: ...
    async def retry_job(self, job_id: str) -> bool: ...
    async def purge_jobs(self, params: PurgeParams) -> int: ...

    async def get_job(self, job_id: str) -> Job | None: ...
    async def list_jobs(self, query: JobQuery) -> list[Job]: ...
    async def get_job_runs(self, job_id: str) -> list[JobRun]: ...
    async def get_job_logs(self, job_id: str) -> list[JobLog]: ...
    async def get_metrics(self) -> Metrics: ...
    async def get_run_stats(self) -> list[RunStats]: ...
    async def count_finished_jobs(
        self, since: datetime, bucket: timedelta
    ) -> list[FinishedCount]: ...

    async def claim_jobs(self, params: ClaimParams) -> list[ClaimedJob]: ...
    async def rate_limit_free_at(self, rate_limits: Mapping[str, RateLimit]) -> datetime | None: ...
    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult: ...
    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]: ...
    async def fail_job(self, failure: Failure) -> FailOutcome | None: ...
    async def release_jobs(self, refs: Sequence[ClaimRef]) -> list[bool]: ...
    async def snooze_job(self, ref: ClaimRef, delay: timedelta) -> Job | None: ...
    async def update_progress(self, ref: ClaimRef, percent: float) -> bool: ...
    async def append_logs(self, entries: Sequence[NewLogEntry]) -> None: ...

    async def recover_expired_leases(self, limit: int) -> list[FailOutcome]: ...
    async def expire_jobs(self, limit: int) -> list[Job]: ...

    async def pause(self, name: str) -> bool: ...
    async def resume(self, name: str) -> bool: ...
    async def list_paused(self) -> list[str]: ...

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None: ...
    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool: ...
    async def release_lock(self, name: str, token: str) -> bool: ...
    async def get_lock(self, name: str) -> LockInfo | None: ...

    async def heartbeat_worker(
        self, name: str, running: int, is_leader: bool, ttl: timedelta
    ) -> None: ...
    async def remove_worker(self, name: str) -> None: ...
    async def list_workers(self) -> list[WorkerInfo]: ...
    async def prune_workers(self) -> list[str]: ...

    async def upsert_schedule(self, spec: ScheduleSpec) -> ScheduledJob: ...
    async def get_schedule(self, name: str) -> ScheduledJob | None: ...
    async def list_schedules(self) -> list[ScheduledJob]: ...
    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool: ...
    async def delete_schedule(self, name: str) -> bool: ...
    async def get_due_schedules(self, limit: int) -> DueSchedules: ...
    async def advance_schedule(self, advance: ScheduleAdvance) -> AdvanceResult: ...


class CombinedBackend(Protocol):
    """An engine that declares `complete_and_claim`: both calls in one transaction, on
    non-empty completions and a claim with room."""

    async def complete_and_claim(
        self, completions: Sequence[Completion], params: ClaimParams
    ) -> tuple[list[datetime | None], list[ClaimedJob]]: ...


class TransactionalBackend(Protocol):
    """An engine that declares `transactional_insert`: insert within the caller's
    transaction (`connection` is the engine's to check; a wrong kind is a `TypeError`)."""

    async def insert_in_transaction(
        self, connection: Any, jobs: Sequence[NewJob]
    ) -> list[InsertResult]: ...


class StreamedBackend(Protocol):
    """An engine that declares `streamed_insert` (`StreamedInsert.insert_job_stream`), on a
    count of at least two jobs."""

    async def insert_job_stream(self, count: int, jobs: Iterator[NewJob]) -> list[InsertResult]: ...


class RemoteWakeups(Protocol):
    """An engine's way to hear other processes' writes: started while anyone listens."""

    def start(self) -> None:
        """Listen (idempotent; called for every new listener). May raise `StorageError`
        when the store is closed."""
        ...

    def stop(self) -> None:
        """The last listener left: stop listening (the engine's `close()` waits for it)."""
        ...


B = TypeVar("B", bound=Backend)


def _nothing_to_claim(params: ClaimParams) -> bool:
    """No room, no type, or no queue served: the answer is [] without asking the engine."""
    return params.limit <= 0 or not params.type_limits or params.queues == frozenset()


class Store(Generic[B]):
    """A `JobStorage` over one engine `B`. Subclasses (`InMemoryJobStorage`,
    `SQLiteJobStorage`, `PostgresJobStorage`) build the engine and pass it here."""

    def __init__(
        self,
        backend: B,
        *,
        capabilities: StoreCapabilities,
        combined: CombinedBackend | None = None,
        transactional: TransactionalBackend | None = None,
        streamed: StreamedBackend | None = None,
        remote: RemoteWakeups | None = None,
        hub: WakeupHub | None = None,
    ) -> None:
        """`hub`: the one the engine's `remote` already feeds (built before the engine);
        a fresh one by default."""
        if capabilities.complete_and_claim != (combined is not None):
            raise ValueError("capabilities.complete_and_claim must match the engine given")
        if capabilities.transactional_insert != (transactional is not None):
            raise ValueError("capabilities.transactional_insert must match the engine given")
        if capabilities.streamed_insert != (streamed is not None):
            raise ValueError("capabilities.streamed_insert must match the engine given")
        if capabilities.cross_process_wakeups != (remote is not None):
            raise ValueError("capabilities.cross_process_wakeups must match the engine given")
        self.capabilities = capabilities
        self._backend = backend
        self._combined = combined
        self._transactional = transactional
        self._streamed = streamed
        self._remote = remote
        self._hub = hub if hub is not None else WakeupHub()
        self._listeners = 0

    # ---- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        await self._backend.init()

    async def close(self) -> None:
        self._hub.clear()
        await self._backend.close()

    async def now(self) -> datetime:
        return await self._backend.now()

    # ---- jobs: write -------------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[InsertResult]:
        if connection is not None:
            if self._transactional is None:
                raise TypeError(
                    f"{type(self).__name__}.insert_jobs() takes no connection=: inserting "
                    f"within an outside transaction is a PostgreSQL feature (got "
                    f"{type(connection).__name__})"
                )
            # No local wake-up: the jobs exist only once the caller commits, and the engine's
            # notification goes out then.
            return await self._transactional.insert_in_transaction(connection, jobs)
        if not jobs:
            return []
        results = await self._backend.insert_jobs(jobs)
        if any(result.created for result in results):
            self._hub.notify()
        return results

    async def insert_job_stream(self, count: int, jobs: Iterator[NewJob]) -> list[InsertResult]:
        if self._streamed is None:
            raise TypeError(f"{type(self).__name__} does not declare streamed_insert")
        if count < 2:  # nothing to overlap: validated in full first, then one insert
            return await self.insert_jobs(list(jobs))
        results = await self._streamed.insert_job_stream(count, jobs)
        if results:
            self._hub.notify()
        return results

    async def cancel_job(self, job_id: str, *, terminate: bool = False) -> CancelOutcome:
        return await self._backend.cancel_job(job_id, terminate)

    async def retry_job(self, job_id: str) -> bool:
        retried = await self._backend.retry_job(job_id)
        if retried:
            self._hub.notify()
        return retried

    async def purge_jobs(self, params: PurgeParams) -> int:
        return await self._backend.purge_jobs(params)

    # ---- jobs: read --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        return await self._backend.get_job(job_id)

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        return await self._backend.list_jobs(query)

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        return await self._backend.get_job_runs(job_id)

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        return await self._backend.get_job_logs(job_id)

    async def get_metrics(self) -> Metrics:
        return await self._backend.get_metrics()

    async def get_run_stats(self) -> list[RunStats]:
        return await self._backend.get_run_stats()

    async def count_finished_jobs(self, since: datetime, bucket: timedelta) -> list[FinishedCount]:
        return await self._backend.count_finished_jobs(since, bucket)

    # ---- claims ------------------------------------------------------------------------------

    async def claim_jobs(self, params: ClaimParams) -> list[ClaimedJob]:
        if _nothing_to_claim(params):
            return []
        return await self._backend.claim_jobs(params)

    async def complete_and_claim(
        self, completions: Sequence[Completion], params: ClaimParams
    ) -> tuple[list[datetime | None], list[ClaimedJob]]:
        """`complete_jobs(completions)`, then `claim_jobs(params)`, in one transaction, on a
        store whose `capabilities.complete_and_claim` is True (see `CombinedClaims`);
        `NotImplementedError` on the others."""
        if self._combined is None:
            raise NotImplementedError(f"{type(self).__name__} does not declare complete_and_claim")
        if not completions:
            return [], await self.claim_jobs(params)
        if _nothing_to_claim(params):
            return await self.complete_jobs(completions), []
        return await self._combined.complete_and_claim(completions, params)

    async def rate_limit_free_at(self, rate_limits: Mapping[str, RateLimit]) -> datetime | None:
        if not rate_limits:
            return None
        return await self._backend.rate_limit_free_at(rate_limits)

    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult:
        if not refs:
            return RenewResult(frozenset(), frozenset())
        return await self._backend.renew_claims(refs, lease_ttl)

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]:
        if not completions:
            return []
        return await self._backend.complete_jobs(completions)

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        outcome = await self._backend.fail_job(failure)
        if outcome is not None and outcome.will_retry:
            self._hub.notify()
        return outcome

    async def release_jobs(self, refs: Sequence[ClaimRef]) -> list[bool]:
        if not refs:
            return []
        released = await self._backend.release_jobs(refs)
        if any(released):
            self._hub.notify()
        return released

    async def snooze_job(self, ref: ClaimRef, delay: timedelta) -> Job | None:
        job = await self._backend.snooze_job(ref, delay)
        if job is not None and job.status is JobStatus.PENDING and delay <= timedelta(0):
            self._hub.notify()  # due at once: another worker may take it now
        return job

    async def update_progress(self, ref: ClaimRef, percent: float) -> bool:
        return await self._backend.update_progress(ref, percent)

    async def append_logs(self, entries: Sequence[NewLogEntry]) -> None:
        if entries:
            await self._backend.append_logs(entries)

    # ---- maintenance -------------------------------------------------------------------------

    async def recover_expired_leases(self, limit: int = 100) -> list[FailOutcome]:
        outcomes = await self._backend.recover_expired_leases(limit)
        if any(outcome.will_retry for outcome in outcomes):
            self._hub.notify()
        return outcomes

    async def expire_jobs(self, limit: int = 100) -> list[Job]:
        return await self._backend.expire_jobs(limit)

    # ---- flow control ------------------------------------------------------------------------

    async def pause(self, name: str) -> bool:
        return await self._backend.pause(check_flow_name(name))

    async def resume(self, name: str) -> bool:
        resumed = await self._backend.resume(check_flow_name(name))
        if resumed:
            self._hub.notify()  # its jobs may be claimable now
        return resumed

    async def list_paused(self) -> list[str]:
        return await self._backend.list_paused()

    # ---- locks -------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        return await self._backend.acquire_lock(name, owner, ttl)

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        return await self._backend.renew_lock(name, token, ttl)

    async def release_lock(self, name: str, token: str) -> bool:
        return await self._backend.release_lock(name, token)

    async def get_lock(self, name: str) -> LockInfo | None:
        return await self._backend.get_lock(name)

    # ---- workers -----------------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, *, running: int, is_leader: bool, ttl: timedelta = DEFAULT_WORKER_TTL
    ) -> None:
        await self._backend.heartbeat_worker(name, running, is_leader, ttl)

    async def remove_worker(self, name: str) -> None:
        await self._backend.remove_worker(name)

    async def list_workers(self) -> list[WorkerInfo]:
        return await self._backend.list_workers()

    async def prune_workers(self) -> list[str]:
        return await self._backend.prune_workers()

    # ---- schedules ---------------------------------------------------------------------------

    async def upsert_schedule(self, spec: ScheduleSpec) -> ScheduledJob:
        return await self._backend.upsert_schedule(spec)

    async def get_schedule(self, name: str) -> ScheduledJob | None:
        return await self._backend.get_schedule(name)

    async def list_schedules(self) -> list[ScheduledJob]:
        return await self._backend.list_schedules()

    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool:
        return await self._backend.set_schedule_enabled(name, enabled)

    async def delete_schedule(self, name: str) -> bool:
        return await self._backend.delete_schedule(name)

    async def get_due_schedules(self, limit: int = 100) -> DueSchedules:
        return await self._backend.get_due_schedules(limit)

    async def advance_schedule(self, advance: ScheduleAdvance) -> AdvanceResult:
        result = await self._backend.advance_schedule(advance)
        if result.job_id is not None:
            self._hub.notify()
        return result

    # ---- wake-ups ----------------------------------------------------------------------------

    def add_wakeup_listener(self, callback: WakeupCallback) -> Callable[[], None]:
        """`callback` runs on the subscribing loop after this handle's writes that may make
        work claimable (the rules in this module's docstring) and, on a store with
        `capabilities.cross_process_wakeups`, after other processes' too: the first listener
        starts the engine's listening, the last one to leave stops it."""
        unsubscribe = self._hub.subscribe(callback)
        if self._remote is not None:
            try:
                self._remote.start()
            except BaseException:
                unsubscribe()
                raise
        self._listeners += 1
        subscribed = True

        def remove() -> None:
            nonlocal subscribed
            if not subscribed:
                return
            subscribed = False
            unsubscribe()
            self._listeners -= 1
            if self._listeners == 0 and self._remote is not None:
                self._remote.stop()

        return remove
