"""`JobScheduler`: the public face. It keeps the registry, validates what users hand it, and wires
the loops together; every distributed decision is delegated to one atomic storage call."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from timecrisis import _tracing
from timecrisis._bounds import check_flow_name, lookup_key, text_problem
from timecrisis._logging import resolve_logger
from timecrisis._sync import SyncBridge, blocking_twin, running_loop, wait_for
from timecrisis.context import JobContext
from timecrisis.definitions import Handler, JobDefinition, ModelT, schema_from_handler
from timecrisis.durations import Duration, parse_duration, parse_job_duration
from timecrisis.enqueueing import EnqueueOptions
from timecrisis.errors import (
    InvalidScheduleError,
    JobAlreadyRegisteredError,
    JobDefinitionNotFoundError,
    JobNotFoundError,
    JobValidationError,
)
from timecrisis.execution.inprocess import HandlerThreads
from timecrisis.execution.registry import Registry
from timecrisis.hooks import (
    Hooks,
    JobFailedHook,
    JobHook,
    LeadershipHook,
    call_hook,
)
from timecrisis.job_type import JobType
from timecrisis.loops._periodic import PeriodicLoop
from timecrisis.loops._stopping import FLOOR, GRACE, StopBudget
from timecrisis.loops.leader import LeaderElector
from timecrisis.loops.maintenance import (
    ExpiryStep,
    ReaperStep,
    RetentionStep,
    ScheduleFiring,
    reaper_interval,
)
from timecrisis.loops.processing import JobProcessor
from timecrisis.loops.runtime import Runtime, Settings
from timecrisis.models import (
    FINISHED_STATUSES,
    Job,
    JobLog,
    JobRun,
    JobStatus,
    Metrics,
    ScheduledJob,
    WorkerInfo,
)
from timecrisis.schedules import ParsedSchedule, first_fire_at, parse_schedule
from timecrisis.storage.base import (
    JobQuery,
    JobStorage,
    PurgeParams,
    ScheduleSpec,
    streamed_insert,
)

T = TypeVar("T")


def _seconds(name: str, value: Duration) -> float:
    # Bounded (100 years): the loops add these to the store's clock.
    return parse_job_duration(value, positive=True).total_seconds()


def _served_queues(queues: Iterable[str] | None) -> frozenset[str] | None:
    """The queues a worker claims from, each checked like a type name; None: every queue."""
    if queues is None:
        return None
    if isinstance(queues, str):  # "a,b" would otherwise be served as the queues "a", ",", "b"
        raise JobValidationError(f"queues must be a list of queue names, got {queues!r}")
    served = frozenset(check_flow_name(queue, "queue") for queue in queues)
    if not served:
        raise JobValidationError("queues must name at least one queue (None serves every queue)")
    return served


def _count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class JobScheduler:
    """Registers job types, enqueues and schedules jobs, and (after `start()`) works them off.

    A process that only enqueues never calls `start()`. See DESIGN §1 for every option.
    """

    def __init__(
        self,
        storage: JobStorage,
        *,
        worker: str | None = None,
        logger: Any = None,
        max_concurrent_jobs: int = 20,
        prefetch: int | None = None,
        job_lock_ttl: Duration = 60,
        leader_lock_ttl: Duration = 30,
        job_processing_interval: Duration = 5,
        job_scheduling_interval: Duration = 60,
        expired_job_check_interval: Duration = 60,
        worker_heartbeat_interval: Duration = 15,
        worker_inactive_check_interval: Duration = 60,
        shutdown_timeout: Duration = 15,
        scheduled_job_max_stale_age: Duration = 3600,
        job_retention: Duration = "30d",
        on_job_started: JobHook | None = None,
        on_job_completed: JobHook | None = None,
        on_job_failed: JobFailedHook | None = None,
        on_leadership_acquired: LeadershipHook | None = None,
        on_leadership_lost: LeadershipHook | None = None,
        queues: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(storage, JobStorage):
            raise TypeError(f"storage must implement JobStorage, got {storage!r}")
        _count("max_concurrent_jobs", max_concurrent_jobs, minimum=1)
        if prefetch is not None:
            _count("prefetch", prefetch, minimum=0)
        if worker is not None and (not isinstance(worker, str) or not worker.strip()):
            raise ValueError(f"worker must be a non-empty string, got {worker!r}")
        self.storage = storage
        # A fresh uuid by default: two processes must never share a worker name (the original
        # let them, and they then renewed and released each other's locks).
        self.worker = worker or f"{socket.gethostname()}-{uuid.uuid4()}"
        self.logger = resolve_logger(logger)
        self.settings = Settings(
            max_concurrent_jobs=max_concurrent_jobs,
            prefetch=prefetch,
            job_lock_ttl=parse_job_duration(job_lock_ttl, positive=True),
            leader_lock_ttl=parse_job_duration(leader_lock_ttl, positive=True),
            job_processing_interval=_seconds("job_processing_interval", job_processing_interval),
            job_scheduling_interval=_seconds("job_scheduling_interval", job_scheduling_interval),
            expired_job_check_interval=_seconds(
                "expired_job_check_interval", expired_job_check_interval
            ),
            worker_heartbeat_interval=_seconds(
                "worker_heartbeat_interval", worker_heartbeat_interval
            ),
            worker_inactive_check_interval=_seconds(
                "worker_inactive_check_interval", worker_inactive_check_interval
            ),
            shutdown_timeout=parse_duration(shutdown_timeout).total_seconds(),
            scheduled_job_max_stale_age=parse_job_duration(scheduled_job_max_stale_age),
            job_retention=parse_job_duration(job_retention, positive=True),
            queues=_served_queues(queues),
        )
        self._registry = Registry(self.logger)
        self._definitions = self._registry.definitions  # read-only here: add through _registry
        self._runtime = Runtime(
            storage=storage,
            worker=self.worker,
            logger=self.logger,
            hooks=Hooks(
                on_job_started=on_job_started,
                on_job_completed=on_job_completed,
                on_job_failed=on_job_failed,
                on_leadership_acquired=on_leadership_acquired,
                on_leadership_lost=on_leadership_lost,
            ),
            settings=self.settings,
            registry=self._registry,
        )
        self._processor: JobProcessor | None = None
        self._elector: LeaderElector | None = None
        self._loops: dict[str, PeriodicLoop] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._running = False
        self._lifecycle_lock: asyncio.Lock | None = None
        self._stop_budget: StopBudget | None = None  # while a stop runs
        self._force_requested = False  # a second signal before the stop got under way

    def configure(
        self,
        *,
        storage: JobStorage | None = None,
        worker: str | None = None,
        max_concurrent_jobs: int | None = None,
        prefetch: int | None = None,
        queues: Iterable[str] | None = None,
    ) -> None:
        """Change the store, the worker name, the concurrency, the prefetch ceiling or the
        queues served of a scheduler that is not running (the CLI's `worker --storage/--worker/
        --concurrency/--prefetch/--queues` use this; `queues=None` leaves them as they are)."""
        if self._running:
            raise RuntimeError("configure() needs a stopped scheduler")
        if storage is not None:
            if not isinstance(storage, JobStorage):
                raise TypeError(f"storage must implement JobStorage, got {storage!r}")
            self.storage = storage
            self._runtime.storage = storage
        if worker is not None:
            if not isinstance(worker, str) or not worker.strip():
                raise ValueError(f"worker must be a non-empty string, got {worker!r}")
            self.worker = worker
            self._runtime.worker = worker
        if max_concurrent_jobs is not None:
            _count("max_concurrent_jobs", max_concurrent_jobs, minimum=1)
            self.settings = dataclasses.replace(
                self.settings, max_concurrent_jobs=max_concurrent_jobs
            )
        if prefetch is not None:
            self.settings = dataclasses.replace(
                self.settings, prefetch=_count("prefetch", prefetch, minimum=0)
            )
        if queues is not None:
            self.settings = dataclasses.replace(self.settings, queues=_served_queues(queues))
        self._runtime.settings = self.settings

    # ---- registry ----------------------------------------------------------------------------

    def register_job(self, definition: JobDefinition[Any]) -> JobDefinition[Any]:
        """Register a job type. May be called before or after `start()`."""
        if not isinstance(definition, JobDefinition):
            raise TypeError(f"expected a JobDefinition, got {definition!r}")
        if definition.type in self._definitions:
            raise JobAlreadyRegisteredError(definition.type)
        self._registry.add(definition)  # chooses its executor; refuses a bad fork-mode type
        if self._processor is not None:
            self._processor.wake()
        return definition

    @overload
    def job(
        self, type: str, *, concurrency: int | None, schema: None = None, **fields: Any
    ) -> Callable[[Callable[[ModelT, JobContext], Any]], JobType[ModelT]]: ...

    @overload
    def job(
        self, type: str, *, concurrency: int | None, schema: builtins.type[ModelT], **fields: Any
    ) -> Callable[[Callable[..., Any]], JobType[ModelT]]: ...

    def job(
        self,
        type: str,
        *,
        concurrency: int | None,
        schema: builtins.type[BaseModel] | None = None,
        **fields: Any,
    ) -> Callable[[Callable[..., Any]], JobType[Any]]:
        """Decorator form of `register_job`. Without `schema=`, the model is the annotation of the
        handler's first parameter. Any other `JobDefinition` field is accepted as a keyword.
        Returns a `JobType` handle (`.enqueue`, `.enqueue_sync`, ...); calling the handle runs
        the handler itself."""

        def decorate(handler: Callable[..., Any]) -> JobType[Any]:
            model = schema if schema is not None else schema_from_handler(handler)
            handle: Handler = handler
            definition = self.register_job(
                JobDefinition(
                    type=type, schema=model, handle=handle, concurrency=concurrency, **fields
                )
            )
            return JobType(self, definition, handler)

        return decorate

    def get_job_definition(self, job_type: str) -> JobDefinition[Any]:
        try:
            return self._definitions[job_type]
        except KeyError:
            raise JobDefinitionNotFoundError(job_type, self._definitions) from None

    @property
    def job_definitions(self) -> dict[str, JobDefinition[Any]]:
        return dict(self._definitions)

    # ---- enqueueing --------------------------------------------------------------------------

    async def enqueue(
        self,
        type: str,
        data: Any,
        *,
        priority: int | None = None,
        max_retries: int | None = None,
        backoff_strategy: str | None = None,
        entity_id: str | None = None,
        expires_at: datetime | None = None,
        expires_in: Duration | None = None,
        run_at: datetime | None = None,
        delay: Duration | None = None,
        unique_key: str | None = None,
        connection: Any = None,
        concurrency_key: str | None = None,
        queue: str | None = None,
    ) -> str:
        """Validate and store one job; return its id (or, with a `unique_key` already held by a
        pending or running job of this type, that job's id)."""
        ids = await self.enqueue_many(
            type,
            [data],
            priority=priority,
            max_retries=max_retries,
            backoff_strategy=backoff_strategy,
            entity_id=entity_id,
            expires_at=expires_at,
            expires_in=expires_in,
            run_at=run_at,
            delay=delay,
            unique_key=unique_key,
            connection=connection,
            concurrency_key=concurrency_key,
            queue=queue,
        )
        return ids[0]

    async def enqueue_many(
        self,
        type: str,
        data: Iterable[Any],
        *,
        priority: int | None = None,
        max_retries: int | None = None,
        backoff_strategy: str | None = None,
        entity_id: str | None = None,
        expires_at: datetime | None = None,
        expires_in: Duration | None = None,
        run_at: datetime | None = None,
        delay: Duration | None = None,
        unique_key: str | None = None,
        connection: Any = None,
        concurrency_key: str | None = None,
        queue: str | None = None,
    ) -> list[str]:
        """Validate every payload, then insert the batch atomically in one call; ids in order."""
        definition = self.get_job_definition(type)
        if isinstance(data, dict | BaseModel | str | bytes):
            raise JobValidationError("enqueue_many takes a list of payloads")
        options = EnqueueOptions.parse(
            definition,
            priority=priority,
            max_retries=max_retries,
            backoff_strategy=backoff_strategy,
            entity_id=entity_id,
            expires_at=expires_at,
            expires_in=expires_in,
            run_at=run_at,
            delay=delay,
            unique_key=unique_key,
            concurrency_key=concurrency_key,
            queue=queue,
        )
        items = list(data)
        if not items:
            return []
        if unique_key is not None and len(items) > 1:
            raise JobValidationError("unique_key applies to one job; enqueue them one by one")
        streamed = streamed_insert(self.storage) if connection is None and len(items) > 1 else None
        # A streamed batch is validated while the store writes the jobs validated before it
        # (an invalid payload raises from inside the insert, which then stores nothing);
        # otherwise every payload is validated before the store is called.
        payloads = [] if streamed is not None else [definition.stored_payload(x) for x in items]
        with _tracing.sending(definition.type, len(items)) as send:  # no-op without OTel
            if streamed is not None:
                results = await streamed(
                    len(items), options.stream_jobs(definition, items, send.headers)
                )
            else:
                batch = options.new_jobs(definition, payloads, send.headers)
                results = await self.storage.insert_jobs(batch, connection=connection)
            send.sent(results)
        processor = self._processor
        if processor is not None and any(r.created for r in results):
            # A delayed job wakes this worker at its due time; workers elsewhere find it by
            # their own processing interval at the latest (docs/architecture.md, Wake-ups).
            if options.delay is not None:
                processor.note_due_in(options.delay.total_seconds())
            elif options.run_at is not None:
                processor.note_due_at(options.run_at)
            processor.wake()
        return [r.id for r in results]

    async def wait_for_job(self, job_id: str, timeout: Duration | None = None) -> Job:
        """Wait until the job is completed, failed or canceled, and return it.
        Raises `JobNotFoundError` for an unknown id and `TimeoutError` after `timeout`."""
        limit = None if timeout is None else parse_duration(timeout).total_seconds()
        if lookup_key(job_id) is None:
            raise JobNotFoundError(job_id)
        async with asyncio.timeout(limit):
            delay = 0.005
            while True:
                job = await self.storage.get_job(job_id)
                if job is None:
                    raise JobNotFoundError(job_id)
                if job.status in FINISHED_STATUSES:
                    return job
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)

    # ---- schedules ---------------------------------------------------------------------------

    async def schedule(
        self,
        name: str,
        type: str,
        data: Any,
        *,
        schedule_type: str,
        schedule_value: str,
        time_zone: str | None = None,
        enabled: bool | None = None,
        allow_overlap: bool = True,
    ) -> str:
        """Create or update the schedule `name`; return its id. Re-registering an unchanged
        schedule keeps its next fire time (a restart never pushes a tick out or drops one);
        `'600s'` for `'10m'` is unchanged.

        The jobs it fires take `type`'s priority, retries and backoff as registered here, now:
        they are stored with the schedule, so the leader that fires a tick need not know the
        type. Registering again (a new priority deployed) updates them and keeps the next tick.
        The `timeout` is not stored: the worker that runs a job applies its own definition's."""
        _check_schedule_name(name)
        if enabled is not None and not isinstance(enabled, bool):
            raise InvalidScheduleError(f"enabled must be a bool or None, got {enabled!r}")
        definition, payload, parsed = self._check_schedule(
            type, data, schedule_type, schedule_value, time_zone
        )
        now = await self.storage.now()
        next_run_at = first_fire_at(parsed, now)
        spec = ScheduleSpec(
            name=name,
            type=type,
            data=payload,
            schedule_type=parsed.schedule_type,
            schedule_value=parsed.schedule_value,
            time_zone=parsed.time_zone,
            next_run_at=next_run_at,
            enabled=enabled,
            allow_overlap=bool(allow_overlap),
            # Resolved here, where the type is registered, and stored with the schedule: the
            # leader that fires the ticks may not know the type (DESIGN §4).
            priority=definition.priority,
            max_retries=definition.max_retries,
            backoff_strategy=definition.backoff_strategy,
            retry_delay=definition.retry_delay_td.total_seconds(),
            max_retry_delay=definition.max_retry_delay_td.total_seconds(),
            queue=definition.queue,
        )
        stored = await self.storage.upsert_schedule(spec)
        loop = self._loops.get("schedules")
        if loop is not None:
            loop.wake()
        return stored.id

    def _check_schedule(
        self,
        type: str,
        data: Any,
        schedule_type: str,
        schedule_value: str,
        time_zone: str | None,
    ) -> tuple[JobDefinition[Any], Any, ParsedSchedule]:
        """What `schedule()` and `periodic()` both check, in this order: the type is registered,
        the payload is valid for it, the schedule parses. Returns the definition, the
        validated payload and the parsed schedule."""
        definition = self.get_job_definition(type)
        payload = definition.validate_payload(data)
        return definition, payload, parse_schedule(schedule_type, schedule_value, time_zone)

    async def get_scheduled_job(self, name: str) -> ScheduledJob | None:
        if lookup_key(name) is None:
            return None
        return await self.storage.get_schedule(name)

    async def list_scheduled_jobs(self) -> list[ScheduledJob]:
        return await self.storage.list_schedules()

    async def enable_scheduled_job(self, name: str) -> bool:
        if lookup_key(name) is None:
            return False
        changed = await self.storage.set_schedule_enabled(name, True)
        loop = self._loops.get("schedules")
        if changed and loop is not None:
            loop.wake()
        return changed

    async def disable_scheduled_job(self, name: str) -> bool:
        if lookup_key(name) is None:
            return False
        return await self.storage.set_schedule_enabled(name, False)

    async def delete_scheduled_job(self, name: str) -> bool:
        if lookup_key(name) is None:
            return False
        return await self.storage.delete_schedule(name)

    # ---- reading and repairing ---------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        if lookup_key(job_id) is None:  # an id no store can hold: a miss, never a crash
            return None
        return await self.storage.get_job(job_id)

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        type: str | None = None,
        entity_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> list[Job]:
        """Newest first; pass the last id of a page as `cursor` to get the next one. An unknown
        cursor (or a filter no job can match) gives an empty page."""
        query = JobQuery(
            status=_status(status),
            type=type,
            entity_id=entity_id,
            limit=_limit(limit),
            cursor=cursor,
        )
        if not _matchable(type, entity_id, cursor):
            return []
        return await self.storage.list_jobs(query)

    async def list_dead_letters(self, *, limit: int = 100, cursor: str | None = None) -> list[Job]:
        """Jobs that failed for good (retries exhausted, non-retryable, expired), newest first."""
        query = JobQuery(dead_lettered=True, limit=_limit(limit), cursor=cursor)
        if not _matchable(cursor):
            return []
        return await self.storage.list_jobs(query)

    async def get_job_logs(self, job_id: str) -> list[JobLog]:
        if lookup_key(job_id) is None:
            return []
        return await self.storage.get_job_logs(job_id)

    async def get_job_runs(self, job_id: str) -> list[JobRun]:
        if lookup_key(job_id) is None:
            return []
        return await self.storage.get_job_runs(job_id)

    async def list_workers(self) -> list[WorkerInfo]:
        return await self.storage.list_workers()

    async def get_metrics(self) -> Metrics:
        return await self.storage.get_metrics()

    # ---- flow control (docs/flow-control.md) -------------------------------------------------

    async def pause(self, name: str) -> bool:
        """Pause a job type or a queue named `name`, cluster-wide: no node claims its jobs until
        `resume(name)`; running jobs finish. True when newly paused."""
        return await self.storage.pause(check_flow_name(name))

    async def resume(self, name: str) -> bool:
        """Lift the pause of `name`; its due jobs start at once (the store wakes the workers of
        every node it can reach, this one included). True when it was paused."""
        resumed = await self.storage.resume(check_flow_name(name))
        processor = self._processor
        if resumed and processor is not None:
            processor.wake()
        return resumed

    async def list_paused(self) -> list[str]:
        """The paused job types and queues, sorted."""
        return await self.storage.list_paused()

    async def retry_job(self, job_id: str) -> bool:
        """Put a failed (or canceled) job back to pending with a fresh set of attempts."""
        if lookup_key(job_id) is None:
            return False
        retried = await self.storage.retry_job(job_id)
        if retried and self._processor is not None:
            self._processor.wake()
        return retried

    async def cancel_job(self, job_id: str, terminate: bool = False) -> bool:
        """Cancel a pending job, or ask a running one to stop (`ctx.is_cancelled`); it then ends
        `canceled` when its handler returns (or raises), and never runs again: not after a stop,
        not after its worker dies (`retry_job` is the one way back). A fork-mode child is
        terminated. With `terminate=True` the handler is not waited for: an async handler's task
        is cancelled (`asyncio.CancelledError` inside it), a fork-mode child is killed; a sync
        handler's thread cannot be, so it still ends `canceled` when it returns. A worker on
        another node learns of the request when it next renews its leases (`job_lock_ttl / 3`).
        True when the job is or will be canceled; False if it is unknown or already finished."""
        if lookup_key(job_id) is None:
            return False
        outcome = await self.storage.cancel_job(job_id, terminate=terminate)
        if outcome == "cancel_requested" and self._processor is not None:
            self._processor.request_cancel(job_id, terminate=terminate)
        return outcome in ("canceled", "cancel_requested")

    async def purge_jobs(
        self,
        *,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        older_than: Duration = 0,
    ) -> int:
        """Delete finished jobs (with their runs and logs) that finished more than `older_than`
        ago; return how many. `status` defaults to every finished status."""
        if status is None:
            statuses = frozenset(FINISHED_STATUSES)
        elif isinstance(status, str):
            statuses = frozenset({_status(status)})  # type: ignore[arg-type]
        else:
            statuses = frozenset(_status(s) for s in status)  # type: ignore[misc]
        if not statuses <= FINISHED_STATUSES:
            raise JobValidationError("purge_jobs only deletes completed, failed or canceled jobs")
        return await self.storage.purge_jobs(
            PurgeParams(statuses=statuses, older_than=parse_job_duration(older_than))
        )

    @property
    def is_leader(self) -> bool:
        return self._runtime.is_leader

    @property
    def is_running(self) -> bool:
        return self._running

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start working: claim and run jobs, heartbeat, take part in leader election."""
        async with self._lock():
            if self._running:
                raise RuntimeError("the scheduler is already running")
            self._force_requested = False
            await self.storage.init()
            await self._before_loops()  # declared schedules; the loop the sync twins use
            runtime = self._runtime
            # Not a fixed-size pool: threads abandoned by timeouts must not eat the capacity.
            self._registry.threads.open(HandlerThreads(self.logger))
            processor = JobProcessor(runtime)
            self._processor = processor
            elector = LeaderElector(runtime, self._on_leadership_change)
            self._elector = elector
            schedules = ScheduleFiring(runtime, processor.wake)
            loops = [
                PeriodicLoop(
                    "heartbeat",
                    self._heartbeat,
                    self.settings.worker_heartbeat_interval,
                    self.logger,
                ),
                PeriodicLoop("leader", elector.step, elector.interval, self.logger),
                PeriodicLoop(
                    "schedules", schedules.step, self.settings.job_scheduling_interval, self.logger
                ),
                PeriodicLoop(
                    "expiry",
                    ExpiryStep(runtime).step,
                    self.settings.expired_job_check_interval,
                    self.logger,
                ),
                PeriodicLoop(
                    "reaper",
                    ReaperStep(runtime, processor.wake, processor.note_due_at).step,
                    reaper_interval(runtime),
                    self.logger,
                ),
            ]
            retention = RetentionStep(runtime)
            loops.append(PeriodicLoop("retention", retention.step, retention.interval, self.logger))
            self._loops = {loop.name: loop for loop in loops}
            self._unsubscribe = self.storage.add_wakeup_listener(processor.wake)
            # Register and try to lead before claiming, so `is_leader` is settled when start()
            # returns on a node that finds the lease free.
            await self._heartbeat()
            with contextlib.suppress(Exception):
                await elector.step()
            processor.start()
            for loop in loops:
                loop.start()
            self._running = True
            self.logger.info(
                "worker %s started (%d job types, up to %d concurrent jobs)",
                self.worker,
                len(self._definitions),
                self.settings.max_concurrent_jobs,
            )

    async def stop(self, force: bool = False) -> None:
        """Stop working. Stops claiming, sets `ctx.is_shutting_down`, gives leadership up, waits up
        to `shutdown_timeout` for running handlers (not with `force=True`), then puts what still
        runs back to pending without charging an attempt. Idempotent; the storage stays open.

        Returns within about `shutdown_timeout` (plus a second for the last writes) even when
        the store does not answer; `force=True`, also while a graceful stop is under way, within
        about a second. What could not be written is logged at ERROR: those jobs return to
        pending when their leases expire."""
        await self._stop(force, from_signal=False)

    async def _stop(self, force: bool, *, from_signal: bool) -> None:
        if force and self._stop_budget is not None:
            self._stop_budget.force()  # a graceful stop is under way: cut it short
        async with self._lock():
            if not self._running:
                return
            self._running = False
            budget = StopBudget(self.settings.shutdown_timeout, force=force)
            self._stop_budget = budget
            if self._force_requested:
                budget.force()
            try:
                await self._stop_within(budget, from_signal=from_signal)
            finally:
                self._stop_budget = None
                self._force_requested = False

    async def _stop_within(self, budget: StopBudget, *, from_signal: bool) -> None:
        loops = list(self._loops.values())
        for loop in loops:
            if loop.name != "heartbeat":
                await loop.stop()
        self._log_stop_begins(budget, from_signal=from_signal)
        if self._elector is not None:
            # Each call bounded: with the store down, leadership simply expires.
            left = max(budget.deadline - asyncio.get_running_loop().time(), FLOOR)
            await self._elector.resign(timeout=min(GRACE / 2, left))
        if self._processor is not None:
            await self._processor.stop(
                force=budget.forced.is_set(), timeout=self.settings.shutdown_timeout, budget=budget
            )
        heartbeat = self._loops.get("heartbeat")
        if heartbeat is not None:
            await heartbeat.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        try:
            async with budget.bounded():
                await self.storage.remove_worker(self.worker)
        except Exception as exc:  # noqa: BLE001 - the leader prunes it once it goes silent
            self.logger.warning(
                "could not unregister worker %s (%s); the leader prunes it once it goes silent",
                self.worker,
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            )
        self._registry.threads.close()  # never waits for abandoned sync handlers
        self._processor = None
        self._elector = None
        self._loops = {}
        self.logger.debug("the stop took %.2fs", budget.elapsed())
        self.logger.info("worker %s stopped", self.worker)

    def _log_stop_begins(self, budget: StopBudget, *, from_signal: bool) -> None:
        running = self._processor.running_handlers() if self._processor is not None else 0
        if budget.forced.is_set():
            self.logger.info("stopping at once: %d running job(s) go back to pending", running)
        elif running == 0:
            self.logger.info("stopping: no job running")
        else:
            self.logger.info(
                "stopping: waiting up to %gs for %d job(s)%s",
                self.settings.shutdown_timeout,
                running,
                "; signal again to force" if from_signal else "",
            )

    async def close(self) -> None:
        """`stop()`, then release the storage."""
        await self.stop()
        await self.storage.close()
        self._shutdown_sync_bridge()

    async def __aenter__(self) -> JobScheduler:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def run(self) -> None:
        """Start, block until SIGINT, SIGTERM or SIGHUP, stop gracefully, close the storage.
        A second signal stops at once (running jobs go back to pending)."""
        asyncio.run(self.serve())

    async def serve(self) -> None:
        """`run()` for code that already has an event loop."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()

        def on_signal() -> None:
            if stop_requested.is_set():
                self.logger.warning("second signal: stopping at once")
                self._force_requested = True
                if self._stop_budget is not None:
                    self._stop_budget.force()
            stop_requested.set()

        installed: list[signal.Signals] = []
        # SIGHUP too: a closed terminal or a supervisor's reload must not kill the worker
        # outright (Python's default for it), which would leave its jobs to lease expiry.
        hangup = getattr(signal, "SIGHUP", None)
        for sig in (signal.SIGINT, signal.SIGTERM, *([hangup] if hangup is not None else [])):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
        try:
            await self.start()
            await stop_requested.wait()
            await self._stop(self._force_requested, from_signal=True)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.close()

    # ---- internals ---------------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        if self._lifecycle_lock is None:
            self._lifecycle_lock = asyncio.Lock()
        return self._lifecycle_lock

    async def _heartbeat(self) -> float | None:
        running = len(self._processor.running) if self._processor is not None else 0
        await self.storage.heartbeat_worker(
            self.worker,
            running=running,
            is_leader=self._runtime.is_leader,
            ttl=self.settings.worker_inactive_after,  # our own deadline, not the leader's
        )
        return None

    def _on_leadership_change(self, leading: bool) -> None:
        if leading:
            for name in ("schedules", "expiry", "reaper", "retention"):
                loop = self._loops.get(name)
                if loop is not None:
                    loop.wake()

    # ---- sync callers, declared schedules, testing (DESIGN §4) ----------------------------------
    #
    # Set at class level so `__init__` need not change: each instance assigns its own on first
    # use (under `_SYNC_STATE_LOCK`, since twins may be called from many threads at once).

    _home_loop: asyncio.AbstractEventLoop | None = None
    _sync_bridge: SyncBridge | None = None
    _sync_delegate: JobScheduler | None = None
    _sync_delegate_source: JobStorage | None = None
    _declared: dict[str, _DeclaredSchedule] | None = None

    enqueue_sync = blocking_twin(enqueue)
    enqueue_many_sync = blocking_twin(enqueue_many)
    schedule_sync = blocking_twin(schedule)
    get_job_sync = blocking_twin(get_job)
    wait_for_job_sync = blocking_twin(wait_for_job)
    cancel_job_sync = blocking_twin(cancel_job)
    retry_job_sync = blocking_twin(retry_job)

    def close_sync(self) -> None:
        """Blocking `close()`: stop (if started), close the store the twins used, and stop the
        twins' thread. For sync code that only enqueues; idempotent. At interpreter exit this
        happens by itself."""
        home = self._live_home_loop()
        if home is not None:
            wait_for(self.close(), home)
            return
        if self._sync_delegate is None and self._sync_bridge is not None:
            # Memory and SQLite: the twins used the store itself, on the private loop.
            self._sync_bridge.run(self.storage.close())
        self._shutdown_sync_bridge()

    def _live_home_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this scheduler was started on, while it is started and that loop runs: the
        one a call from another thread must hand its work to. None otherwise."""
        home = self._home_loop
        if self._processor is not None and home is not None and home.is_running():
            return home
        return None

    def _run_blocking(self, factory: Callable[[JobScheduler], Coroutine[Any, Any, T]]) -> T:
        """Run `factory(scheduler)` for a blocking twin (see `timecrisis._sync`): on the loop
        this scheduler works on while it is started, else on the private loop, with a clone of
        a PostgreSQL store."""
        home = self._live_home_loop()
        if home is not None:
            return wait_for(factory(self), home)
        caller = running_loop()
        bridge = self._bridge()
        if caller is not None and caller is bridge.loop:
            raise RuntimeError("a *_sync method cannot be called from the sync bridge's loop")
        return bridge.run(factory(self._delegate()))

    def _bridge(self) -> SyncBridge:
        with _SYNC_STATE_LOCK:
            if self._sync_bridge is None:
                self._sync_bridge = SyncBridge(f"timecrisis-sync-{self.worker}")
            return self._sync_bridge

    def _delegate(self) -> JobScheduler:
        """Whom the private loop calls: this scheduler, or, on PostgreSQL, a never-started twin
        sharing this one's registry, on a clone of the store (its pool must not be shared with
        whatever loop the store is used on)."""
        storage = self.storage
        clone = _loop_bound_clone(storage)
        if clone is None:
            return self
        with _SYNC_STATE_LOCK:
            if self._sync_delegate is not None and self._sync_delegate_source is storage:
                return self._sync_delegate
            previous = self._sync_delegate
            twin = JobScheduler(clone(), worker=self.worker, logger=self.logger)
            # Shared by reference: later registrations count there too.
            twin._registry, twin._definitions = self._registry, self._definitions
            twin._runtime.registry = self._registry
            self._sync_delegate, self._sync_delegate_source = twin, storage
            bridge = self._bridge()
        if previous is not None:  # `configure(storage=...)` changed the store since
            bridge.run(previous.storage.close())
        bridge.set_cleanup(twin.storage.close)
        return twin

    def _shutdown_sync_bridge(self) -> None:
        bridge = self._sync_bridge
        if bridge is not None:
            bridge.shutdown()
        self._sync_delegate = self._sync_delegate_source = None

    # Declared schedules.

    def periodic(
        self,
        name: str,
        type: str,
        data: Any,
        *,
        schedule_type: str,
        schedule_value: str,
        time_zone: str | None = None,
        allow_overlap: bool = True,
    ) -> None:
        """Declare a schedule; `start()` upserts every declared schedule before its loops run
        (the `schedule()` rules: an unchanged schedule keeps its next fire time and its
        enabled flag), so `timecrisis worker app:scheduler` brings its schedules with it.

        Checked now (the type must be registered; payload and schedule must be valid). Declared
        on a started scheduler, it is upserted at once as well. Declaring a name twice is an
        `InvalidScheduleError`."""
        _check_schedule_name(name)
        declared = self._declared if self._declared is not None else {}
        self._declared = declared
        if name in declared:
            raise InvalidScheduleError(f"schedule {name!r} is already declared")
        _, _, parsed = self._check_schedule(type, data, schedule_type, schedule_value, time_zone)
        declaration = _DeclaredSchedule(name, type, data, parsed, bool(allow_overlap))
        declared[name] = declaration
        home = self._live_home_loop()
        if home is not None:
            future = asyncio.run_coroutine_threadsafe(self._upsert_declared([declaration]), home)
            future.add_done_callback(self._log_late_declaration)

    @property
    def declared_schedules(self) -> list[str]:
        """The names of the schedules declared with `periodic()`, in declaration order."""
        return list(self._declared or {})

    async def _before_loops(self) -> None:
        """Called by `start()` once the store is ready, before any loop runs."""
        self._home_loop = asyncio.get_running_loop()
        await self._upsert_declared(list((self._declared or {}).values()))

    async def _upsert_declared(self, declarations: Sequence[_DeclaredSchedule]) -> None:
        for d in declarations:
            try:
                await self.schedule(
                    d.name,
                    d.type,
                    d.data,
                    schedule_type=d.parsed.schedule_type,
                    schedule_value=d.parsed.schedule_value,
                    time_zone=d.parsed.time_zone,
                    allow_overlap=d.allow_overlap,
                )
            except InvalidScheduleError as exc:
                if d.parsed.schedule_type != "exact":
                    raise
                # A one-off declared in code outlives its moment: the next boot must not fail.
                self.logger.warning("declared schedule %r not upserted: %s", d.name, exc)

    def _log_late_declaration(self, future: Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            self.logger.error("declared schedule could not be upserted: %s", exc)

    # Testing.

    async def drain(self, timeout: Duration = 30) -> list[Job]:
        """Run, in this process, every job due now or becoming due while this runs (retries
        included), until no job of a type registered here is pending-and-due or running and no
        job this drain ran waits for a retry; return the jobs it finished (completed, failed or
        canceled), in the order they started. Starts the scheduler if needed (and stops it
        afterwards). Raises `TimeoutError` after `timeout`. For tests: see README, "Testing
        your jobs"."""
        limit = parse_job_duration(timeout, positive=True).total_seconds()
        started: dict[str, None] = {}  # an ordered set of the ids this process started
        original = self._runtime.hooks

        async def record(job: Job) -> None:
            started[job.id] = None
            await call_hook(self.logger, "on_job_started", original.on_job_started, job)

        self._runtime.hooks = dataclasses.replace(original, on_job_started=record)
        owns_start = not self._running
        timed_out = False
        try:
            if owns_start:
                await self.start()
            try:
                async with asyncio.timeout(limit):
                    await self._drain_until_quiet(started)
            except TimeoutError:
                timed_out = True
                raise TimeoutError(
                    f"drain(timeout={timeout!r}): jobs were still pending or running"
                ) from None
        finally:
            self._runtime.hooks = original
            if owns_start:
                await self.stop(force=timed_out)
        jobs = [await self.storage.get_job(job_id) for job_id in started]
        return [j for j in jobs if j is not None and j.status in FINISHED_STATUSES]

    async def _drain_until_quiet(self, started: dict[str, None]) -> None:
        # Quiet = nothing to do in two checks `_DRAIN_QUIET` apart: one check reads pending and
        # running jobs in two queries, and a job claimed between them is in neither; a claim
        # in flight has marked jobs running that the processor does not hold yet.
        quiet_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if self._processor is not None:
                self._processor.wake()  # a retry that just became due: claim it now
            busy = self._processor is not None and bool(self._processor.running)
            if busy or await self._drain_has_work(started):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= _DRAIN_QUIET:
                return
            await asyncio.sleep(0.01)

    async def _drain_has_work(self, started: dict[str, None]) -> bool:
        now = await self.storage.now()
        page = 1000
        for status in (JobStatus.RUNNING, JobStatus.PENDING):
            jobs = await self.storage.list_jobs(JobQuery(status=status, limit=page))
            if len(jobs) == page:
                return True  # more than a page waits: certainly not drained
            for job in jobs:
                if job.type not in self._definitions:
                    continue  # another process's work: this one cannot run it
                if status is JobStatus.RUNNING or job.id in started:
                    return True
                due = job.run_at <= now and (job.expires_at is None or job.expires_at > now)
                if due:
                    return True
        return False


def _check_schedule_name(name: object) -> None:
    problem = text_problem(name) or (None if str(name).strip() else "must not be blank")
    if problem is not None:
        raise InvalidScheduleError(f"schedule name {problem}: {name!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class _DeclaredSchedule:
    name: str
    type: str
    data: Any
    parsed: ParsedSchedule
    allow_overlap: bool


_SYNC_STATE_LOCK = threading.RLock()
_DRAIN_QUIET = 0.05  # seconds with nothing to do before drain() calls it done


def _loop_bound_clone(storage: JobStorage) -> Callable[[], JobStorage] | None:
    """`storage.clone` for a store whose connections belong to one event loop (PostgreSQL);
    None for the thread-safe, loop-agnostic ones (memory, SQLite)."""
    module = sys.modules.get("timecrisis.storage.postgres.store")
    if module is None or not isinstance(storage, module.PostgresJobStorage):
        return None  # the PostgreSQL module is not even loaded: this is not a PostgreSQL store
    clone: Callable[[], JobStorage] = storage.clone
    return clone


def _status(value: JobStatus | str | None) -> JobStatus | None:
    if value is None or isinstance(value, JobStatus):
        return value
    try:
        return JobStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise JobValidationError(f"status must be one of {allowed}, got {value!r}") from None


def _matchable(*keys: object) -> bool:
    """False if a filter or cursor given (not None) is a value no stored job can have."""
    return all(key is None or lookup_key(key) is not None for key in keys)


def _limit(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise JobValidationError(f"limit must be an int between 1 and 10000, got {value!r}")
    return value
