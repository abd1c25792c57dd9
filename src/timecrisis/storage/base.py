"""The `JobStorage` protocol: the one contract every backend meets.

Rules every backend follows (the conformance suite in `tests/storage/` pins each of them):

- **Atomic calls.** Each method is one atomic operation against the store. Every decision that must
  hold across processes and hosts (who owns a job, how many jobs of a type run, who leads, whether a
  schedule tick already fired) is taken inside one call, never as a read in Python followed by a
  write.
- **One clock.** Every comparison with "now" uses the store's own clock: `clock.now()` for the
  in-memory and SQLite stores, the database's `now()` for PostgreSQL (unless a clock is injected for
  tests). Callers never pass "now" in; relative times (`delay`, `expires_in`, TTLs) are resolved by
  the store. `await storage.now()` tells callers what the store's clock says.
- **Fencing.** A claim writes a fresh `token` into the job row. Completing, failing, releasing,
  renewing and reporting progress all require the current token and the `running` status; with a
  stale token they change nothing and report it (`None`/`False`).
- **Self-initialising.** The first call on a fresh store runs `init()` (schema and migrations),
  idempotently and safely when several processes start at once.
- **Errors.** Driver errors surface as `StorageError` (the driver's exception kept as `__cause__`).
- **Times** returned are aware UTC datetimes. JSON values round-trip exactly.
- **Cancel is final.** Once `cancel_job` has asked a running job to stop, no end of that run
  puts the job back to `pending`: a release (`release_jobs`, the worker stopping or handing a
  prefetched job back; `snooze_job`, the handler raised `Snooze`), a failure (`fail_job`, the
  handler raised after the request) and a lease recovery (`recover_expired_leases`, its worker
  died) all end the job `canceled`, finished then, never retried and never dead-lettered.
  Each run is still recorded as what happened to it (`released`, `failed` with its error).
  Only `retry_job` brings a canceled job back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from timecrisis.models import (
    BackoffStrategy,
    FailureKind,
    Job,
    JobLog,
    JobRun,
    JobStatus,
    JsonValue,
    LogLevel,
    Metrics,
    RunStatus,
    ScheduledJob,
    ScheduleType,
    WorkerInfo,
)
from timecrisis.rate_limits import RateLimit

LEADER_LOCK = "timecrisis:leader"
"""The name of the distributed lock that elects the cluster's leader."""

DEFAULT_WORKER_TTL = timedelta(seconds=45)
"""How long a worker row lives after a heartbeat that names no TTL, and after the last heartbeat
of a row written before workers stored their own deadline: 3 x the default 15 s heartbeat."""


# --------------------------------------------------------------------------------------------
# Parameters and results. Frozen dataclasses, so fields can be added without breaking adapters.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job, ready to insert. The caller generates `id` (a UUID string)."""

    id: str
    type: str
    data: JsonValue
    priority: int = 1
    max_retries: int = 0
    backoff_strategy: BackoffStrategy = "exponential"
    retry_delay: float = 10.0  # seconds: the backoff base
    max_retry_delay: float = 86400.0  # seconds: the backoff cap
    entity_id: str | None = None
    unique_key: str | None = None
    # Not before: an absolute time, or a delay from the store's now. At most one is set;
    # neither means "now".
    run_at: datetime | None = None
    delay: timedelta | None = None
    # Expiry: an absolute time, or a length of time from the store's now (wins over expires_at).
    expires_at: datetime | None = None
    expires_in: timedelta | None = None
    # Set when a schedule fires: (scheduled_job_id, schedule_fire_at) is unique across all jobs.
    scheduled_job_id: str | None = None
    schedule_fire_at: datetime | None = None
    # Message headers stored with the job and returned as `Job.headers`: the trace context of
    # the enqueue (`timecrisis._tracing`). Strings only; None stores nothing.
    headers: dict[str, str] | None = None
    # `data` as JSON text, when the caller has it (the scheduler does: the payload check
    # writes it). Stores keep this text instead of dumping `data` again; None: they dump it.
    data_json: str | None = None
    # Flow control: returned as `Job.concurrency_key` and limited by `ClaimParams.key_limits`.
    concurrency_key: str | None = None
    # Flow control: the queue the job waits in (`Job.queue`); claims name the queues they serve.
    queue: str = "default"


@dataclass(frozen=True, slots=True)
class InsertResult:
    """`id` is the new job's id, or, when `created` is False, the id of the pending or running
    job of the same type that already holds the `unique_key`."""

    id: str
    created: bool


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Filters for `list_jobs`. Newest first (by enqueue sequence). `cursor` is the id of the last
    job of the previous page; the page holds the jobs enqueued before it."""

    status: JobStatus | None = None
    type: str | None = None
    entity_id: str | None = None
    dead_lettered: bool | None = None
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimParams:
    """Claim up to `limit` jobs for `worker`.

    `type_limits` maps every job type this worker can run to its cluster-wide concurrency limit
    (`None` = unlimited). Jobs of other types are never claimed and never block these.

    Flow control, cluster-wide like `type_limits` (types not listed are not limited):
    `rate_limits` caps the claims of a type in any sliding window (every claim of the type by
    any worker counts, this one included); `key_limits` caps the running jobs of a type that
    share one `concurrency_key` (jobs without a key are limited by `type_limits` only).

    `queues`: the queues this worker serves (`None` = every queue). Jobs of other queues are
    never claimed and never block these.
    """

    worker: str
    limit: int
    lease_ttl: timedelta
    type_limits: Mapping[str, int | None]
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    key_limits: Mapping[str, int] = field(default_factory=dict)
    queues: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ClaimRef:
    """What proves ownership of a claimed job."""

    job_id: str
    token: str
    run_id: str


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as it is right after the claim: status running, `attempts` already charged,
    `started_at` set, `worker` = the claimer."""

    job: Job
    token: str
    run_id: str
    lease_expires_at: datetime

    @property
    def ref(self) -> ClaimRef:
        return ClaimRef(self.job.id, self.token, self.run_id)


@dataclass(frozen=True, slots=True)
class Completion:
    """A successful end of a run. With `canceled=True` (the handler returned after `cancel_job`,
    or was interrupted by `cancel_job(terminate=True)`) the job ends `canceled` instead of
    `completed`; the run is still `completed`."""

    ref: ClaimRef
    result: JsonValue = None
    canceled: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed run, as `fail_job` writes it:

    - `error` (`"ExceptionType: message"`) becomes the run's `error` and the job's `fail_reason`;
    - `kind` becomes the run's `failure_kind` and the job's `failure_kind` (the worker passes
      `error`, `timeout`, `crashed`, `non_retryable` or `canceled`; the store itself writes
      `lease_expired` in `recover_expired_leases` and `expired` in `expire_jobs`);
    - `traceback` (the formatted traceback of the handler's exception, or None) becomes the
      run's `traceback`; the job keeps none (read it from its runs);
    - `retry_in` (the handler raised `Retry(delay)`): a retry runs at the store's now +
      `retry_in` instead of the backoff's time (still within `max_retries`, still never at
      or past `expires_at`).

    `retryable=False` dead-letters the job whatever attempts are left."""

    ref: ClaimRef
    error: str
    retryable: bool = True
    kind: FailureKind = FailureKind.ERROR
    traceback: str | None = None
    retry_in: timedelta | None = None


@dataclass(frozen=True, slots=True)
class FailOutcome:
    """The job after a failed attempt: `pending` again with `run_at` set by the backoff
    (`will_retry=True`), `failed` and dead-lettered, or `canceled` when `cancel_job` had asked
    it to stop (`will_retry=False`, not dead-lettered)."""

    job: Job
    will_retry: bool
    error: str
    kind: FailureKind = FailureKind.ERROR  # the run's failure_kind, for logs, hooks and metrics


@dataclass(frozen=True, slots=True)
class RenewResult:
    """`valid`: job ids whose lease was extended (token still current). `cancel_requested`: the
    subset that `cancel_job` asked to stop. `terminate_requested`: the subset of
    `cancel_requested` whose request said `terminate=True` (interrupt the handler, kill a
    fork-mode child), so a worker on another node learns it too."""

    valid: frozenset[str]
    cancel_requested: frozenset[str]
    terminate_requested: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class NewLogEntry:
    job_id: str
    run_id: str | None
    level: LogLevel
    message: str
    metadata: dict[str, JsonValue] | None = None


@dataclass(frozen=True, slots=True)
class LockInfo:
    name: str
    owner: str
    expires_at: datetime
    acquired_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A schedule to create or update by `name`.

    When a schedule of that name exists and its definition is unchanged (same `type`,
    `schedule_type`, `time_zone`, the same `schedule_value` by
    `timecrisis.schedules.canonical_schedule_value` (`'10m'` = `'600s'`), and `data` compared as
    canonical JSON), its `next_run_at` and `last_scheduled_at` are kept; otherwise `next_run_at`
    is replaced. `enabled=None` keeps the existing flag (a new schedule starts enabled).
    `allow_overlap`, the `schedule_value` text and the job options are always updated: they
    change what the next tick's job looks like, not when it fires, so a new priority deployed
    with a restart never moves a tick.

    The job options (priority, retries, backoff) are those of the jobs the schedule fires,
    resolved by the caller from its `JobDefinition`: the leader that fires a tick uses them as
    stored, whatever its own registry says.
    """

    name: str
    type: str
    data: JsonValue
    schedule_type: ScheduleType
    schedule_value: str
    time_zone: str | None
    next_run_at: datetime | None
    enabled: bool | None = None
    allow_overlap: bool = True
    id: str | None = None  # used only when the schedule is created; else a fresh UUID
    priority: int = 1
    max_retries: int = 0
    backoff_strategy: BackoffStrategy = "exponential"
    retry_delay: float = 10.0  # seconds: the backoff base
    max_retry_delay: float = 86400.0  # seconds: the backoff cap
    queue: str = "default"  # the queue of the jobs it fires


@dataclass(frozen=True, slots=True)
class DueSchedules:
    """`schedules`: enabled schedules with `next_run_at <= now`, oldest first. `next_due_at`: the
    earliest `next_run_at` among enabled schedules that are not due yet (None if there is none)."""

    now: datetime
    schedules: list[ScheduledJob]
    next_due_at: datetime | None


@dataclass(frozen=True, slots=True)
class ScheduleAdvance:
    """Move one schedule past a tick, atomically, and possibly fire a job for it.

    Applied only if the schedule still has `next_run_at == expected_next_run_at` (compare and
    set: when two nodes both act as leader, one of them wins). Then:
    - `next_run_at` := `next_run_at` (None when the schedule is finished), `enabled` := False if
      `disable`;
    - if `job` is given: unless `allow_overlap` is False and a pending or running job of this
      schedule exists, insert `job` (whose `scheduled_job_id`/`schedule_fire_at` identify the tick;
      a second job for the same tick is refused by the store) and set `last_scheduled_at` to the
      tick's fire time.
    """

    schedule_id: str
    expected_next_run_at: datetime
    next_run_at: datetime | None
    disable: bool = False
    job: NewJob | None = None
    allow_overlap: bool = True


@dataclass(frozen=True, slots=True)
class AdvanceResult:
    advanced: bool  # False: the compare-and-set lost (another node moved the schedule first)
    job_id: str | None = None  # the job created for the tick, if any
    skipped_overlap: bool = False  # the tick was skipped because the previous job still runs


CancelOutcome = Literal["canceled", "cancel_requested", "not_cancellable", "not_found"]


@dataclass(frozen=True, slots=True)
class PurgeParams:
    """Delete finished jobs (with their runs and logs) whose `finished_at` is older than
    `older_than` (relative to the store's now). `statuses` must all be finished statuses."""

    statuses: frozenset[JobStatus] = field(
        default_factory=lambda: frozenset(
            {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
        )
    )
    older_than: timedelta = timedelta(0)
    # Delete at most this many (the leader purges in slices): the oldest `finished_at` first,
    # jobs that finished at the same instant in enqueue order.
    limit: int | None = None


RUN_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0
)  # fmt: skip
"""Upper bounds in seconds (inclusive, as Prometheus' `le`) of the run-duration histogram that
`get_run_stats` fills: sub-second jobs and hour-long reports both land in a useful bucket."""


@dataclass(frozen=True, slots=True)
class RunStats:
    """Aggregates over the runs of one job type that are in one run status (`get_run_stats`).

    `duration_buckets[i]` counts the runs whose duration is at most `RUN_DURATION_BUCKETS[i]`
    (cumulative, like a Prometheus histogram); `duration_count` and `duration_sum` cover every
    run that has a duration (a running run has none)."""

    type: str
    status: RunStatus
    runs: int
    retries: int  # runs with attempt > 1: the automatic retries among them
    lease_losses: int  # failed runs of kind `lease_expired` (the worker died or lost contact)
    duration_count: int
    duration_sum: float  # seconds
    duration_buckets: tuple[int, ...]
    # Failed runs by `failure_kind`, in `FailureKind` order, kinds with no run left out (so
    # empty unless `status` is failed). `lease_losses` is the `lease_expired` entry.
    failures: tuple[tuple[FailureKind, int], ...] = ()


@dataclass(frozen=True, slots=True)
class FinishedCount:
    """`count` jobs finished with `status` in `[start, start + bucket)` (`count_finished_jobs`)."""

    start: datetime
    status: JobStatus
    count: int


WakeupCallback = Callable[[], None]


# --------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------


@runtime_checkable
class WorkerStore(Protocol):
    """The worker contract: what a scheduler needs to run jobs (claims, leases, locks,
    schedules, inserts). See the module docstring for the rules every method follows; each
    method's docstring lists the fields it writes."""

    # ---- lifecycle --------------------------------------------------------------------

    async def init(self) -> None:
        """Create the schema and apply pending migrations. Idempotent; safe to call from many
        tasks and processes at once; refuses a schema newer than this code (StorageError)."""
        ...

    async def close(self) -> None:
        """Release connections and threads. Idempotent. The store may not be used afterwards."""
        ...

    async def now(self) -> datetime:
        """The store's clock."""
        ...

    # ---- jobs: write ------------------------------------------------------------------

    async def insert_jobs(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[InsertResult]:
        """Insert jobs atomically (all or none), in order, in one round trip where the backend
        allows. A job whose (`type`, `unique_key`) is held by a pending or running job is not
        inserted: its result carries the holder's id and `created=False`.

        Writes, per new job: every `NewJob` field as given, `status` = `pending`,
        `attempts` = 0, `run_at` = the given time, now + `delay`, or now, `expires_at` = now +
        `expires_in` when given, `created_at` = now and the next enqueue sequence.
        `connection`: a backend-specific transaction to insert within, for a store whose
        `capabilities.transactional_insert` is True (PostgreSQL); other stores raise
        `TypeError` when it is not None."""
        ...

    async def cancel_job(self, job_id: str, *, terminate: bool = False) -> CancelOutcome:
        """A pending job becomes `canceled` (writes `status`, `finished_at` = now). A running
        job gets a cancel request (writes `cancel_requested` = True, and the terminate flag
        when `terminate`; seen by its worker through `renew_claims`) and is left running; from
        then on it can only end `canceled` (see "Cancel is final" above). A later request
        without `terminate` does not withdraw it. A finished job is `not_cancellable`."""
        ...

    async def retry_job(self, job_id: str) -> bool:
        """Put a `failed` or `canceled` job back to `pending` now with a fresh set of attempts.
        Writes `status` = `pending`, `attempts` = 0, `dead_lettered` = False, `fail_reason` and
        `failure_kind` = None, `run_at` = now, `worker` = None, `finished_at` = None, the claim
        (token, lease, cancel request) cleared. Its runs and logs stay. False if the job does
        not exist or is not failed/canceled."""
        ...

    async def purge_jobs(self, params: PurgeParams) -> int:
        """Delete finished jobs as `PurgeParams` says, with their runs and logs; return how
        many. Writes nothing else."""
        ...

    # ---- claims -----------------------------------------------------------------------

    async def claim_jobs(self, params: ClaimParams) -> list[ClaimedJob]:
        """Atomically claim up to `params.limit` pending jobs whose `run_at <= now`, that are not
        expired (`expires_at` is None or > now), and whose type is in `params.type_limits`.

        Order: priority descending, then enqueue sequence ascending. Per-type limits are
        cluster-wide: the number of `running` jobs of a type (every worker, this claim included)
        never exceeds its limit; a type at its limit is skipped and never blocks other types.

        Flow control, with the same rule of never blocking the others: a type of
        `params.rate_limits` is claimed at most `limit` times in any window of its length
        (the claims of every worker count; the store keeps their times); a job whose
        `concurrency_key` already has `params.key_limits[type]` running jobs of its type is
        skipped, and the claim takes the next ones (of that key, no more than the room left).
        Only jobs whose `queue` is in `params.queues` (when it is not None) are
        claimed, and no job whose type or queue is paused (`pause`); jobs of other queues and
        paused jobs are skipped and never block the others.

        Each claimed job becomes `running` with `attempts + 1`, `started_at = now`,
        `worker = params.worker`, a fresh token, `lease_expires_at = now + lease_ttl`, no cancel
        (nor terminate) request; and a new `running` run (attempt = the new attempts) is created."""
        ...

    async def rate_limit_free_at(self, rate_limits: Mapping[str, RateLimit]) -> datetime | None:
        """The earliest time (the store's clock) at which one of these types, whose window is
        full now, may be claimed again; None when none is full. A hint for the claimer's sleep:
        it writes nothing and decides nothing."""
        ...

    async def renew_claims(self, refs: Sequence[ClaimRef], lease_ttl: timedelta) -> RenewResult:
        """Extend the lease of each job whose token is still current (status running): writes
        the job's `lease_expires_at` = now + `lease_ttl` and touches its run. Stale refs are
        left alone and not in `valid`."""
        ...

    async def complete_jobs(self, completions: Sequence[Completion]) -> list[datetime | None]:
        """Finish runs successfully, in one atomic call. For each: when the token is current, the
        job becomes `completed` (or `canceled`), `finished_at = now`, `progress = 100` when
        completed, `result` stored, lock cleared, `worker` kept (who ran it); its run becomes
        `completed` with `finished_at`, `duration`, and progress 100. Returns `finished_at`, or
        None for a stale token."""
        ...

    async def fail_job(self, failure: Failure) -> FailOutcome | None:
        """Record a failed run (run `failed` with `error`, `failure_kind`, `traceback`,
        `finished_at`, `duration`; the job's `fail_reason` and `failure_kind`) and decide:
        if retryable and `attempts <= max_retries`, the job goes back to `pending` with `run_at`
        = now + `failure.retry_in` when given, else from `timecrisis.retry.next_retry_at`
        (unless that is at or past `expires_at`: then it is dead-lettered as expired); else it
        becomes `failed`, `finished_at = now`, dead-lettered.
        A job with a cancel request becomes `canceled` instead (`finished_at = now`, not
        dead-lettered, never retried): the handler raised after being asked to stop.
        `fail_reason` = the error. Lock cleared. `worker` stays set when the job ends `failed`
        or `canceled` (it names who ran the last attempt). None for a stale token."""
        ...

    async def release_jobs(self, refs: Sequence[ClaimRef]) -> list[bool]:
        """Give claimed jobs back (graceful stop): `pending`, `attempts - 1` (the attempt is not
        charged), `run_at` unchanged, lock cleared; the run becomes `released`. A job with a
        cancel request is not given back: it becomes `canceled` (`finished_at = now`, the
        attempt stays charged: it ran), its run `released` too. True for both; False for a
        stale token."""
        ...

    async def snooze_job(self, ref: ClaimRef, delay: timedelta) -> Job | None:
        """The handler raised `Snooze(delay)`: give the job back like `release_jobs` (`pending`,
        `attempts - 1`, lock cleared, run `released`) but with `run_at = now + delay` on the
        store's clock, `worker` cleared. A job with a cancel request ends `canceled` instead
        (`finished_at = now`, the attempt stays charged), its run `released` too. Returns the
        job as it now is, or None for a stale token."""
        ...

    async def update_progress(self, ref: ClaimRef, percent: float) -> bool:
        """Writes the job's and the run's `progress` (0..100); extends nothing. False if
        stale."""
        ...

    async def append_logs(self, entries: Sequence[NewLogEntry]) -> None:
        """Persist log entries in order: each row gets the entry's fields and `timestamp` =
        now. Writes nothing on the job."""
        ...

    # ---- maintenance (the leader runs these) ------------------------------------------

    async def recover_expired_leases(self, limit: int = 100) -> list[FailOutcome]:
        """Running jobs whose lease expired (their worker died or lost contact): fail the attempt
        exactly as `fail_job` would, with an error that says the lease expired, `failure_kind`
        `lease_expired` and no traceback, and return the outcomes (a job with a cancel request
        ends `canceled`, as in `fail_job`). At most `limit`: the oldest lease expiry first,
        leases that expired at the same instant in enqueue order. Their old tokens are dead
        from here on."""
        ...

    async def expire_jobs(self, limit: int = 100) -> list[Job]:
        """Pending jobs with `expires_at <= now` become `failed`, dead-lettered, finished now,
        with a `fail_reason` saying they expired and `failure_kind` `expired`. No run is
        written: no attempt started (the job's earlier runs, if any, keep their own kinds).
        Returns them."""
        ...

    # ---- locks and leadership ---------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, ttl: timedelta) -> str | None:
        """Take the lock `name` if it is free or expired; return a fresh token, else None.
        Writes the lock row: `owner`, a fresh `token`, `acquired_at` = now, `expires_at` =
        now + ttl. Not re-entrant: a second acquire by the same owner while it holds the lock
        returns None."""
        ...

    async def renew_lock(self, name: str, token: str, ttl: timedelta) -> bool:
        """Extend the lock (writes `expires_at` = now + ttl) if `token` still holds it and it
        has not expired."""
        ...

    async def release_lock(self, name: str, token: str) -> bool:
        """Release the lock (deletes its row) if `token` holds it."""
        ...

    # ---- workers ----------------------------------------------------------------------

    async def heartbeat_worker(
        self, name: str, *, running: int, is_leader: bool, ttl: timedelta = DEFAULT_WORKER_TTL
    ) -> None:
        """Create or update the worker's row: writes `last_heartbeat` = now, `expires_at` =
        now + ttl, `running`, `is_leader`, and `first_seen` = now on creation, so a worker
        whose row was removed is registered again. `ttl` is the worker's own: how long it may
        stay silent before it counts as dead."""
        ...

    async def remove_worker(self, name: str) -> None:
        """Delete the worker's row (its jobs are left alone). Nothing if there is none."""
        ...

    async def prune_workers(self) -> list[str]:
        """Delete workers whose own deadline has passed (`expires_at < now`; for a row without
        one, `last_heartbeat + DEFAULT_WORKER_TTL`), and end the leases of the jobs they hold
        (writes their `lease_expires_at` = now) so `recover_expired_leases` recovers them at
        once. Returns the removed names, sorted. The caller's settings play no part: each
        worker decided its own deadline when it sent its heartbeat."""
        ...

    # ---- schedules --------------------------------------------------------------------

    async def upsert_schedule(self, spec: ScheduleSpec) -> ScheduledJob:
        """Create or update a schedule by name, atomically (see `ScheduleSpec` for which fields
        are kept). Writes every `ScheduleSpec` field, `updated_at` = now, and on creation `id`
        and `created_at` = now."""
        ...

    async def set_schedule_enabled(self, name: str, enabled: bool) -> bool:
        """Writes `enabled` and `updated_at` = now. False if there is no such schedule."""
        ...

    async def delete_schedule(self, name: str) -> bool:
        """Delete the schedule (jobs it created stay). False if there is no such schedule."""
        ...

    async def get_due_schedules(self, limit: int = 100) -> DueSchedules:
        """Up to `limit` enabled schedules with `next_run_at <= now`, oldest `next_run_at`
        first, with the store's `now` and the earliest not-yet-due `next_run_at` (see
        `DueSchedules`). A read: writes nothing (firing is `advance_schedule`'s)."""
        ...

    async def advance_schedule(self, advance: ScheduleAdvance) -> AdvanceResult:
        """Move one schedule past a tick, compare-and-set on `expected_next_run_at` (see
        `ScheduleAdvance`). When applied, writes the schedule's `next_run_at`, `enabled` =
        False if `disable`, `updated_at` = now, and, when a job was inserted for the tick,
        `last_scheduled_at` = the tick's fire time; the job is written as `insert_jobs` would,
        with `scheduled_job_id`/`schedule_fire_at` naming the tick. Writes nothing when the
        compare-and-set loses (`advanced=False`)."""
        ...

    # ---- flow control -----------------------------------------------------------------

    async def pause(self, name: str) -> bool:
        """Pause `name`, cluster-wide: from now on no claim takes a job whose type or queue is
        `name` (running jobs finish). Writes the pause row (`name`, `paused_at` = now). True
        when newly paused, False when it already was. A name no store can hold (see
        `timecrisis._bounds.text_problem`) is a `JobValidationError`, nothing written."""
        ...

    async def resume(self, name: str) -> bool:
        """Lift the pause of `name` (deletes its row); wakes listeners like an insert, since
        its jobs may be claimable now. True when it was paused. Bad names as in `pause`."""
        ...

    # ---- wake-ups ---------------------------------------------------------------------

    def add_wakeup_listener(self, callback: WakeupCallback) -> Callable[[], None]:
        """Call `callback` (on the event loop that subscribed, never blocking) whenever new work
        may be claimable: a job was inserted, released or retried, from this process or, where
        the backend can tell, from another. A hint only: listeners still poll. Returns a
        function that unsubscribes."""
        ...


@runtime_checkable
class StoreInspector(Protocol):
    """Reads, metrics and statistics: what the dashboard, the CLI and the scheduler's query
    API (`get_job`, `list_jobs`, ...) need. Every method is a read: it writes nothing."""

    # ---- jobs -------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        """Newest first (enqueue sequence descending); keyset-paginated by `cursor`. An unknown
        cursor yields an empty page."""
        ...

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        """Runs in attempt order (creation order)."""
        ...

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        """Logs in time order (insertion order among equal timestamps)."""
        ...

    # ---- metrics and statistics -------------------------------------------------------

    async def get_metrics(self) -> Metrics:
        """Counts by status (and dead-lettered), overall and per type, and the average duration
        of completed runs. Computed with aggregates in the store, never by loading every job."""
        ...

    async def get_run_stats(self) -> list[RunStats]:
        """Aggregates over every run the store holds, one entry per (job type, run status) that
        has runs, ordered by type then status. One aggregate pass over the runs in the store
        (never loading them): meant for a metrics scrape, not for a hot path."""
        ...

    async def count_finished_jobs(self, since: datetime, bucket: timedelta) -> list[FinishedCount]:
        """Jobs whose `finished_at >= since`, counted per status in consecutive buckets of width
        `bucket` starting at `since` (a job finished at `t` falls in bucket
        `floor((t - since) / bucket)`). Only non-empty buckets, ordered by start then status.
        Reads the finished-time index, so it costs the jobs in the window, not the table."""
        ...

    # ---- flow control -----------------------------------------------------------------

    async def list_paused(self) -> list[str]:
        """Every paused type or queue name, sorted."""
        ...

    # ---- coordination -----------------------------------------------------------------

    async def get_lock(self, name: str) -> LockInfo | None:
        """The lock's current holder, or None if it is free or expired."""
        ...

    async def list_workers(self) -> list[WorkerInfo]:
        """Every registered worker, by name. `running` is the number of jobs running with that
        worker at the time of the call (read from the jobs, in the same query), not the count
        sent with its last heartbeat."""
        ...

    # ---- schedules --------------------------------------------------------------------

    async def get_schedule(self, name: str) -> ScheduledJob | None: ...

    async def list_schedules(self) -> list[ScheduledJob]:
        """Every schedule, by name."""
        ...


@runtime_checkable
class JobStorage(WorkerStore, StoreInspector, Protocol):
    """The whole storage contract: the worker contract plus the inspector. What the scheduler
    takes and the three stores implement; a plain class with every method of both parts is
    one (`isinstance(x, JobStorage)`).

    A store may also declare `capabilities` (a `StoreCapabilities`); a store that declares
    none has none of the optional features. Read them with `capabilities_of(store)`."""


@runtime_checkable
class CombinedClaims(Protocol):
    """The optional call behind `StoreCapabilities.complete_and_claim`."""

    async def complete_and_claim(
        self, completions: Sequence[Completion], params: ClaimParams
    ) -> tuple[list[datetime | None], list[ClaimedJob]]:
        """`complete_jobs(completions)`, then `claim_jobs(params)`, in ONE transaction, with
        the fields each writes: the claim sees the completions (a type's freed slots count at
        once); fencing, per-type limits and claim order are those of the two calls. All or
        nothing: on error neither happened. Returns both calls' results."""
        ...


class CompleteAndClaim(Protocol):
    """A bound `complete_and_claim` (see `CombinedClaims`)."""

    async def __call__(
        self, completions: Sequence[Completion], params: ClaimParams, /
    ) -> tuple[list[datetime | None], list[ClaimedJob]]: ...


@dataclass(frozen=True, slots=True)
class StoreCapabilities:
    """What a store can do beyond `JobStorage`, declared rather than probed.

    - `complete_and_claim`: the store implements `CombinedClaims` (one transaction for a
      worker's completions and its next claim; the worker then uses it);
    - `transactional_insert`: `insert_jobs(..., connection=)` inserts within the caller's
      transaction (PostgreSQL); without it, a connection is a `TypeError`;
    - `cross_process_wakeups`: wake-up listeners also hear writes made by other processes
      (PostgreSQL LISTEN/NOTIFY, SQLite's `data_version` watcher), not only this handle's;
    - `streamed_insert`: the store implements `StreamedInsert` (a large batch is written while
      its jobs are still being made; the scheduler's `enqueue_many` then uses it).
    """

    complete_and_claim: bool = False
    transactional_insert: bool = False
    cross_process_wakeups: bool = False
    streamed_insert: bool = False


NO_CAPABILITIES = StoreCapabilities()
"""What a store that declares nothing can do: nothing optional."""


def capabilities_of(storage: object) -> StoreCapabilities:
    """The capabilities `storage` declares (its `capabilities` attribute), or none."""
    declared = getattr(storage, "capabilities", None)
    return declared if isinstance(declared, StoreCapabilities) else NO_CAPABILITIES


@runtime_checkable
class StreamedInsert(Protocol):
    """The optional call behind `StoreCapabilities.streamed_insert`."""

    async def insert_job_stream(self, count: int, jobs: Iterator[NewJob]) -> list[InsertResult]:
        """`insert_jobs` of the `count` jobs `jobs` yields, which may be consumed while
        earlier ones are already on their way to the database, so making the jobs (payload
        validation) overlaps the store's work. None of them has a `unique_key` or a schedule
        tick (a `ValueError` otherwise). All or nothing: if the iterator raises, its exception
        propagates and no job is stored. Returns the results in order."""
        ...


InsertJobStream = Callable[[int, Iterator[NewJob]], Awaitable[list[InsertResult]]]


def streamed_insert(storage: object) -> InsertJobStream | None:
    """`storage.insert_job_stream` when the store declares that capability, else None."""
    if isinstance(storage, StreamedInsert) and capabilities_of(storage).streamed_insert:
        return storage.insert_job_stream
    return None


def combined_claim(storage: object) -> CompleteAndClaim | None:
    """`storage.complete_and_claim` when the store declares that capability, else None."""
    if isinstance(storage, CombinedClaims) and capabilities_of(storage).complete_and_claim:
        return storage.complete_and_claim
    return None
