"""The worker: claim jobs, run them, renew their leases, record how they ended.

Shape of the hot path (one worker process):

- **Claim in batches.** One `claim_jobs` call asks for every free slot at once; the store enforces
  per-type limits inside that call. A full batch means more work may be waiting, so the loop claims
  again at once; otherwise it sleeps until woken (an enqueue here or, through the store's wake-up
  channel, elsewhere; a slot freeing up), until the earliest due time it knows (a retry it
  wrote, a delayed job enqueued here: `loops/_due.py`), or at most `job_processing_interval`.
- **Prefetch while jobs are short.** A claim may take more jobs than there are free slots: the
  extra ones wait in `running` for a slot (`_slots`, `max_concurrent_jobs` of them), so the next
  claim runs in the database while this worker works off the last one. How many is decided per
  claim by `PrefetchBudget` (none for long handlers, none when a type has a cluster-wide limit);
  the buffer is refilled in chunks of at least half its size, so claims stay large; a job that
  waits for a slot longer than `_prefetch.MAX_WAIT` is handed back to the queue.
- **Complete in batches.** Finished jobs queue their completion; one flusher writes everything
  queued in one `complete_jobs` call, and completions that arrive meanwhile wait for the next call.
- **Claim while completing.** A job gives its slot back when its handler returns, not when its
  completion is written, so the next claim never waits for that write. No guarantee rests on
  the slot: until the write lands the store still counts the job as running, so a per-type
  limit only looks fuller than it is, and the lease is renewed as for any running job. Jobs
  awaiting their write are bounded (at most `max_concurrent_jobs` of them), so a store that
  accepts claims but refuses completions cannot make the worker claim without end.
- **One commit for both.** A store with `complete_and_claim` (PostgreSQL) gets the pending
  completions and the next claim in one call, one transaction: where every commit waits for a
  WAL flush, that halves the flushes per batch (docs/performance.md, W2). The claim loop then
  writes the completions; the flusher only takes over when the loop will not claim (no free
  slot, no type, stopping) or after a combined call failed (the completions are then written
  alone, so a claim that keeps failing cannot hold them back).
- **Leases are renewed here, not by the handler**: one `renew_claims` call for every running job
  each `job_lock_ttl / 3`, independent of what the handlers do (a busy handler cannot starve its
  own lease as long as the event loop runs; fork mode removes even that condition).
- **Nothing here may die.** A storage error backs off and retries; a handler or hook error is
  recorded or logged. A failure write that keeps failing is abandoned: the lease then expires and
  the leader's reaper takes the job back (at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from timecrisis import _tracing
from timecrisis._logging import child
from timecrisis.context import JobContext, JobState
from timecrisis.definitions import JobDefinition, to_json_result
from timecrisis.errors import NonRetryableError, Retry, Snooze
from timecrisis.execution.failures import failure_kind, failure_traceback
from timecrisis.execution.inprocess import run_in_process
from timecrisis.hooks import call_hook
from timecrisis.loops._due import Anchor, DueTimes
from timecrisis.loops._periodic import ErrorBackoff, wait_for_event
from timecrisis.loops._prefetch import MAX_WAIT, PrefetchBudget
from timecrisis.loops._stopping import FLOOR, GRACE, StopBudget
from timecrisis.loops.runtime import Runtime
from timecrisis.models import Job, JobStatus, JsonValue, LogLevel
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimParams,
    ClaimRef,
    Completion,
    FailOutcome,
    Failure,
    NewLogEntry,
    combined_claim,
)

# How often to retry writing a failure before leaving the job to lease expiry.
_FAIL_WRITE_ATTEMPTS = 5
# How long one reading of the store's clock serves to turn store times into sleeps. Not one
# reading per sleep: under load that would double the round trips of a claim loop that knows
# of a retry due later. The clocks do not drift apart measurably in this time; a stepped
# clock costs at most one early claim, then the interval.
_ANCHOR_MAX_AGE = 10.0

T = TypeVar("T")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "the store did not answer in time"
    return f"{type(exc).__name__}: {exc}"


@dataclass(eq=False, slots=True)
class RunningJob:
    claimed: ClaimedJob
    definition: JobDefinition[Any]
    state: JobState
    task: asyncio.Task[None] | None = None
    last_renewed: float = field(default_factory=time.monotonic)
    # When the handler got its slot (monotonic); None while the job waits, prefetched.
    started: float | None = None
    # The async task was cancelled on purpose (lease lost, forced stop): write nothing.
    abandoned: bool = False
    # The async task was cancelled by `cancel_job(terminate=True)`: the job ends canceled.
    terminated: bool = False
    # The handler returned or raised: a terminate request no longer interrupts anything (it
    # must not cancel the write of the run's end).
    handler_done: bool = False
    # The handler returned; the completion waits to be written. The slot is free already.
    finishing: bool = False
    # Its failure is being written (`_fail`).
    failing: bool = False

    @property
    def settling(self) -> bool:
        """The handler has ended and its outcome is being written: a renewal that finds the
        lease gone may just have raced that write (which ends the lease), so it proves no
        loss; the write itself reports a real one."""
        return self.finishing or self.failing

    @property
    def ref(self) -> ClaimRef:
        return self.claimed.ref

    @property
    def job(self) -> Job:
        return self.claimed.job


class _CompleteAndClaim(Protocol):
    """A store's optional `complete_and_claim`: `complete_jobs` then `claim_jobs` in one
    transaction (see PostgresJobStorage). Stores without it get the two calls."""

    async def __call__(
        self, completions: Sequence[Completion], params: ClaimParams, /
    ) -> tuple[list[datetime | None], list[ClaimedJob]]: ...


class LeaseLostError(Exception):
    """The job's lease was lost: another worker may run it now."""


class _StorageOps:
    """`JobContext` operations for an in-process handler: straight to the store."""

    def __init__(self, processor: JobProcessor, running: RunningJob) -> None:
        self._processor = processor
        self._running = running

    async def log(
        self, level: LogLevel, message: str, metadata: dict[str, JsonValue] | None
    ) -> None:
        ref = self._running.ref
        entry = NewLogEntry(ref.job_id, ref.run_id, level, message, metadata)
        await self._processor.runtime.storage.append_logs([entry])

    async def touch(self) -> None:
        await self._processor.renew([self._running])

    async def update_progress(self, percent: float) -> None:
        if not await self._processor.runtime.storage.update_progress(self._running.ref, percent):
            self._processor.mark_lease_lost(self._running)


class JobProcessor:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._logger = child(runtime.logger, "worker")
        self.running: dict[str, RunningJob] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._main_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._pending_completions: list[tuple[RunningJob, Completion]] = []
        self._finishing = 0  # entries of `running` whose handler returned (see `finishing`)
        self._combine: _CompleteAndClaim | None = None
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._shutting_down = False
        self._slots: asyncio.Semaphore | None = None  # one per handler allowed to run
        self._budget = PrefetchBudget(concurrency=1, ceiling=0)
        self._hand_backs: list[RunningJob] = []
        self._hand_back_task: asyncio.Task[None] | None = None
        self._stop_budget: StopBudget | None = None  # set while stop() runs
        self.claims_made = 0
        # When known work becomes due (retries written here, delayed enqueues made here).
        self._due = DueTimes()
        self._anchor: Anchor | None = None  # the latest reading of the store's clock

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = False
        self._shutting_down = False
        self._combine = combined_claim(self.runtime.storage)  # declared, not probed
        settings = self.runtime.settings
        self._slots = asyncio.Semaphore(settings.max_concurrent_jobs)
        self._budget = PrefetchBudget(
            concurrency=settings.max_concurrent_jobs, ceiling=settings.prefetch_ceiling
        )
        self._main_task = loop.create_task(self._claim_loop(), name="timecrisis-claim")
        self._renew_task = loop.create_task(self._renew_loop(), name="timecrisis-renew")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, *, force: bool, timeout: float, budget: StopBudget | None = None) -> None:
        """Stop claiming; let running handlers finish for up to `timeout` seconds (not at all
        with `force`); then give what still runs back to the store without charging an attempt.

        Bounded even when the store does not answer: every store call here runs under
        `budget` (see loops/_stopping.py), and what could not be written is logged at ERROR
        and left to lease expiry."""
        budget = budget if budget is not None else StopBudget(timeout, force=force)
        self._stop_budget = budget
        self._stopping = True
        self._shutting_down = True
        self._wake.set()
        for running in self.running.values():
            running.state.shutting_down = True
        await self._end_claim_loop(budget)

        # Prefetched jobs that have not started go back to the queue now, not after the wait:
        # another worker can run them while this one finishes its handlers.
        unstarted = [r for r in self._unfinished() if r.started is None]
        self._abandon(unstarted)
        if unstarted:
            await self._settle(unstarted, budget)
            await self._release(unstarted)

        await budget.wait_for_handlers([r.task for r in self._unfinished() if r.task is not None])
        budget.end_wait()

        leftovers = self._unfinished()
        self._abandon(leftovers)
        if leftovers:
            await self._settle(leftovers, budget)
        await self._drain_completions()
        await self._end_hand_backs(budget)
        if leftovers:
            await self._release(leftovers)

        if self._renew_task is not None:
            self._renew_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renew_task
            self._renew_task = None
        self._stop_budget = None

    def running_handlers(self) -> int:
        """Jobs whose handler runs now (not prefetched, not finished)."""
        return sum(1 for r in self._unfinished() if r.started is not None and not r.settling)

    async def _end_claim_loop(self, budget: StopBudget) -> None:
        """Wait for the claim loop to notice the stop. A claim that does not answer within
        `GRACE` is cancelled; if it committed after all, its jobs come back when their
        leases expire."""
        task, self._main_task = self._main_task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with budget.bounded(cap=GRACE):
                await asyncio.wait([task])
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=FLOOR)
        if task.done() and not task.cancelled():
            task.result()  # an unexpected error of the loop surfaces here, as before

    @staticmethod
    async def _settle(jobs: list[RunningJob], budget: StopBudget) -> None:
        """Let cancelled job tasks unwind (a fork-mode child is terminated), within budget."""
        tasks = [r.task for r in jobs if r.task is not None]
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with budget.bounded(cap=5):
                    await asyncio.wait(tasks)

    async def _end_hand_backs(self, budget: StopBudget) -> None:
        task = self._hand_back_task
        if task is None or task.done():
            return
        with contextlib.suppress(TimeoutError):
            async with budget.bounded():
                await asyncio.wait([task])
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=FLOOR)

    def _unfinished(self) -> list[RunningJob]:
        """Jobs whose task still runs (started or waiting for a slot) and was not abandoned."""
        return [
            r
            for r in self.running.values()
            if r.task is not None and not r.task.done() and not r.abandoned
        ]

    @staticmethod
    def _abandon(jobs: list[RunningJob]) -> None:
        for running in jobs:
            running.abandoned = True
            assert running.task is not None
            running.task.cancel()

    async def _release(self, leftovers: list[RunningJob], *, why: str = "at stop") -> None:
        refs = [r.ref for r in leftovers]
        try:
            results = await self._bounded(self.runtime.storage.release_jobs(refs))
        except Exception as exc:  # noqa: BLE001 - the leases will expire and the reaper recovers
            self._logger.error(
                "could not release %d job(s) %s: %s; their leases expire and the leader "
                "recovers them",
                len(refs),
                why,
                _describe(exc),
            )
            results = [False] * len(refs)
        for running, released in zip(leftovers, results, strict=True):
            self._forget(running)
            if released and running.state.cancelled:  # the store ended it canceled, not pending
                self._logger.info(
                    "job %s (%s) ended canceled %s (cancel_job had asked it to stop)",
                    running.job.id,
                    running.job.type,
                    why,
                )
            elif released:
                self._logger.info(
                    "released job %s (%s) back to pending %s", running.job.id, running.job.type, why
                )

    async def _bounded(self, call: Awaitable[T]) -> T:
        """A store call; during a stop, within the stop's budget (a dead store must not hold
        the stop). Raises TimeoutError when the budget runs out."""
        budget = self._stop_budget
        if budget is None:
            return await call
        async with budget.bounded():
            return await call

    # ---- claiming ----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        runtime = self.runtime
        settings = runtime.settings
        backoff = ErrorBackoff()
        while not self._stopping:
            self._wake.clear()
            type_limits = runtime.type_limits()
            free = self._room(settings.max_concurrent_jobs, type_limits)
            # Without a free slot the loop waits for one (a freed slot wakes it), not a due time.
            idle = settings.job_processing_interval
            if free > 0 and type_limits:
                params = ClaimParams(
                    worker=runtime.worker,
                    limit=free,
                    lease_ttl=settings.job_lock_ttl,
                    type_limits=type_limits,
                )
                batch: list[tuple[RunningJob, Completion]] = []
                if self._combine is not None:
                    batch, self._pending_completions = self._pending_completions, []
                claim_issued = time.monotonic()
                try:
                    if batch:
                        assert self._combine is not None
                        results, claims = await self._combine([c for _, c in batch], params)
                    else:
                        claims = await runtime.storage.claim_jobs(params)
                except asyncio.CancelledError:
                    # A stop gave up waiting for this call: its completions are still to write.
                    self._pending_completions[:0] = batch
                    raise
                except Exception as exc:  # noqa: BLE001 - storage down: back off, keep the worker
                    if batch:  # written alone from now on: a failing claim must not hold them
                        self._pending_completions[:0] = batch
                        self._start_flusher()
                    delay = backoff.next_delay()
                    self._logger.warning(
                        "claiming jobs failed (%s: %s); retrying in %.1fs",
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    await self._sleep(delay)
                    continue
                backoff.reset()
                self._due.claimed_at(claim_issued, self._anchor)
                if batch:
                    self._after_completions(batch, results)
                if self._stop_requested():  # stop() began while we claimed: give them back
                    await self._release([self._register(c) for c in claims])
                    break
                for claimed in claims:
                    self._launch(self._register(claimed))
                if len(claims) == free:
                    continue  # a full batch: more may be waiting
                idle = await self._idle_delay(idle)
            elif self._pending_completions:
                self._start_flusher()  # no claim to ride on
            await self._sleep(idle)

    def _room(self, concurrency: int, type_limits: dict[str, int | None]) -> int:
        """How many jobs to claim now: 0 to wait.

        `held` counts the claimed jobs whose handler has not returned (running or waiting for a
        slot). Without prefetch the room is the free slots. With it, the worker may hold
        `concurrency + allowance` jobs, and refills only by at least half of that, unless a slot
        is free and nothing waits: small claims would cost a round trip for a few jobs. Jobs
        awaiting their completion write are bounded too (a store that accepts claims but
        refuses completions must not make the worker claim without end)."""
        held = len(self.running) - self._finishing
        capacity = concurrency + self._prefetch_allowance(type_limits)
        room = min(capacity - held, 2 * capacity - len(self.running))
        if held >= concurrency and room < capacity // 2:
            return 0
        return max(room, 0)

    def _prefetch_allowance(self, type_limits: dict[str, int | None]) -> int:
        if self._budget.ceiling <= 0:
            return 0
        if any(cap is not None and cap > 0 for cap in type_limits.values()):
            # A prefetched job of a limited type would hold one of the type's cluster-wide
            # slots while it waits here, and another worker could not use it.
            return 0
        now = time.monotonic()
        oldest = max(
            (
                now - r.started
                for r in self.running.values()
                if r.started is not None and not r.finishing
            ),
            default=0.0,
        )
        return self._budget.allowance(oldest)

    def _stop_requested(self) -> bool:
        # A method, not the attribute: it changes while we await, which type narrowing ignores.
        return self._stopping

    async def _sleep(self, seconds: float) -> None:
        await wait_for_event(self._wake, seconds)

    # ---- known due times ---------------------------------------------------------------------

    def note_due_at(self, at: datetime) -> None:
        """Work becomes due at `at` (the store's clock): a retry this worker wrote, a `run_at`
        enqueued here. The claim loop wakes for it, not at its next interval."""
        self._due.add_store_time(at)
        self._wake.set()  # recompute the sleep

    def note_due_in(self, seconds: float) -> None:
        """Work becomes due `seconds` from now: a `delay` enqueued here. Counted from this
        call, after the store resolved the delay: never early."""
        self._due.add_local_deadline(time.monotonic() + seconds)
        self._wake.set()

    async def _idle_delay(self, interval: float) -> float:
        """How long the claim loop sleeps after a claim that left slots free: until the
        earliest due time it knows, at most `interval` (which bounds the discovery of work
        enqueued elsewhere without a wake-up)."""
        if not self._due:
            return interval
        anchor = self._anchor
        stale = anchor is None or time.monotonic() - anchor.monotonic > _ANCHOR_MAX_AGE
        if self._due.has_store_times and stale:
            try:
                store_now = await self.runtime.storage.now()
            except Exception as exc:  # noqa: BLE001 - the claim will say if the store is down
                self._logger.debug(
                    "reading the store's clock failed (%s: %s)", type(exc).__name__, exc
                )
                return min(interval, 1.0)
            self._anchor = Anchor(store_now, time.monotonic())
        until = self._due.seconds_until_next(time.monotonic(), self._anchor)
        return interval if until is None else min(interval, until)

    def _register(self, claimed: ClaimedJob) -> RunningJob:
        stale = self.running.get(claimed.job.id)
        if stale is not None:
            # The store handed out a job we still run: our lease on it ended (the reaper took
            # it back before our own renewals gave up), so that run must stop now.
            self.mark_lease_lost(stale)
        definition = self.runtime.definitions[claimed.job.type]
        running = RunningJob(claimed, definition, JobState())
        running.state.shutting_down = self._shutting_down
        self.running[claimed.job.id] = running
        self.claims_made += 1
        return running

    def _launch(self, running: RunningJob) -> None:
        running.task = asyncio.get_running_loop().create_task(
            self._execute(running), name=f"timecrisis-job-{running.job.id}"
        )

    # ---- executing ---------------------------------------------------------------------------

    async def _execute(self, running: RunningJob) -> None:
        try:
            await self._execute_in_slot(running)
        except asyncio.CancelledError:
            if running.abandoned or not running.terminated:
                raise
            self._end_terminated(running)

    def _end_terminated(self, running: RunningJob) -> None:
        """`cancel_job(terminate=True)` cancelled this task: the cancellation was ours and ends
        here (uncancel), and the job ends canceled, its run recorded like any other."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        self._logger.info(
            "job %s (%s) canceled: its handler was interrupted (cancel_job terminate=True)",
            running.job.id,
            running.job.type,
        )
        self._queue_completion(running, Completion(running.ref, None, canceled=True))

    async def _execute_in_slot(self, running: RunningJob) -> None:
        slots = self._slots
        assert slots is not None, "start() creates the slots"
        if slots.locked():  # a prefetched job: wait for a slot, for MAX_WAIT at most
            try:
                async with asyncio.timeout(MAX_WAIT):
                    await slots.acquire()
            except TimeoutError:
                self._hand_back(running)
                return
            except asyncio.CancelledError:
                if running.abandoned:
                    return  # stop() or a lost lease: they handle the job
                raise
        else:  # a free slot: taken at once, without arming a timer on the per-job path
            await slots.acquire()
        running.started = time.monotonic()
        try:
            await self._execute_started(running)
        finally:
            slots.release()

    async def _execute_started(self, running: RunningJob) -> None:
        job = running.job
        if running.state.cancelled:  # cancelled while it waited for a slot: do not start it
            self._queue_completion(running, Completion(running.ref, None, canceled=True))
            return
        hooks = self.runtime.hooks
        await call_hook(self._logger, "on_job_started", hooks.on_job_started, job)
        began = time.monotonic()
        self._logger.debug("job %s (%s) started", job.id, job.type)
        try:
            with _tracing.attempt(job, self.runtime.worker, running.state):  # no-op without OTel
                result = await self._run_handler(running)
        except asyncio.CancelledError:
            if running.abandoned:
                return  # stop() or a lost lease cancelled us on purpose; they handle the job
            raise
        except Exception as exc:  # noqa: BLE001 - a handler's error fails its attempt, nothing more
            self._budget.record(time.monotonic() - began)
            if running.abandoned:
                return
            if isinstance(exc, Snooze):  # not a failure: the handler gives the job back
                await self._snooze(running, exc)
                return
            await self._fail(running, exc)
            return
        took = time.monotonic() - began
        self._budget.record(took)
        if running.abandoned:
            return
        self._logger.debug("job %s (%s) finished in %.2fs", job.id, job.type, took)
        stored, ok = to_json_result(result)
        if not ok:
            self._logger.warning(
                "job %s (%s) returned a %s, which is not JSON-serializable; result not stored",
                job.id,
                job.type,
                type(result).__name__,
            )
        self._queue_completion(
            running, Completion(running.ref, stored, canceled=running.state.cancelled)
        )

    async def _run_handler(self, running: RunningJob) -> Any:
        job = running.job
        definition = running.definition
        try:
            payload = definition.load_payload(job.data)
        except ValidationError as exc:
            # A rolling deploy changed the schema under a queued job: retrying cannot help.
            raise NonRetryableError(
                f"the stored payload no longer matches the schema of {job.type!r}: {exc}"
            ) from exc
        ctx = JobContext(
            job_id=job.id,
            job_type=job.type,
            payload=payload,
            attempt=job.attempts,
            entity_id=job.entity_id,
            logger=child(self.runtime.logger, f"job.{job.type}"),
            ops=_StorageOps(self, running),
            state=running.state,
            loop=asyncio.get_running_loop(),
        )
        runner = self.runtime.extras.get("fork_runner") if definition.fork_mode else None
        try:
            if runner is not None:
                return await runner(definition, job, ctx, running.state)
            return await run_in_process(definition, payload, ctx, self.runtime.threads)
        finally:
            running.handler_done = True

    async def _fail(self, running: RunningJob, exc: BaseException) -> None:
        running.failing = True  # a renewal racing this write proves no lost lease
        job = running.job
        error = f"{type(exc).__name__}: {exc}"
        retryable = not isinstance(exc, NonRetryableError)
        failure = Failure(
            running.ref,
            error,
            retryable=retryable,
            kind=failure_kind(exc),
            traceback=failure_traceback(exc),
            retry_in=exc.delay if isinstance(exc, Retry) else None,
        )
        written, outcome = await self._write_end(
            running, "record the failure of", lambda: self.runtime.storage.fail_job(failure)
        )
        if not written:
            return
        if outcome is None:
            self._logger.warning(
                "job %s (%s) failed after its lease was lost; the failure was not recorded",
                job.id,
                job.type,
            )
            return
        if outcome.will_retry:  # wake at its run_at, not at the next interval
            self._due.add_store_time(outcome.job.run_at)
        self._log_failure(job, failure, outcome)
        await call_hook(
            self._logger, "on_job_failed", self.runtime.hooks.on_job_failed, outcome.job, exc
        )

    async def _write_end(
        self, running: RunningJob, what: str, write: Callable[[], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        """Write how a run ended (a failure, a snooze), retrying a failing store a few times;
        then forget the run either way. `(False, None)` when every try failed: the lease then
        expires and the leader takes the job back (at-least-once, never lost)."""
        backoff = ErrorBackoff(cap=2.0)
        for attempt in range(_FAIL_WRITE_ATTEMPTS):
            try:
                result = await write()
            except Exception as write_error:  # noqa: BLE001 - retry, then leave it to the reaper
                if attempt + 1 == _FAIL_WRITE_ATTEMPTS:
                    self._logger.error(
                        "could not %s job %s (%s: %s); the leader will take it back when its "
                        "lease expires",
                        what,
                        running.job.id,
                        type(write_error).__name__,
                        write_error,
                    )
                    self._forget(running)
                    self._wake.set()
                    return False, None
                await asyncio.sleep(backoff.next_delay())
            else:
                self._forget(running)
                self._wake.set()
                return True, result
        raise AssertionError("unreachable: the last attempt returns")

    async def _snooze(self, running: RunningJob, snooze: Snooze) -> None:
        """The handler raised `Snooze`: the job goes back to pending, due after the delay, the
        attempt not charged; no `on_job_failed` (nothing failed). A write that keeps failing
        leaves the job to lease expiry, as for a failure."""
        running.failing = True  # a renewal racing this write proves no lost lease
        job = running.job
        written, snoozed = await self._write_end(
            running, "snooze", lambda: self.runtime.storage.snooze_job(running.ref, snooze.delay)
        )
        if not written:
            return
        if snoozed is None:
            self._logger.warning(
                "job %s (%s) snoozed after its lease was lost; nothing was recorded",
                job.id,
                job.type,
            )
            return
        if snoozed.status is JobStatus.PENDING:
            self._due.add_store_time(snoozed.run_at)  # wake at its run_at, not the interval
            self._logger.info(
                "job %s (%s) snoozed until %s%s; attempt %d not charged",
                job.id,
                job.type,
                snoozed.run_at.isoformat(),
                f" ({snooze.reason})" if snooze.reason else "",
                job.attempts,
            )
        else:
            self._logger.info(
                "job %s (%s) snoozed after cancel_job: ended canceled", job.id, job.type
            )

    def _log_failure(self, job: Job, failure: Failure, outcome: FailOutcome) -> None:
        """WARNING for an attempt that will be retried (or whose job was canceled meanwhile),
        ERROR for one that dead-letters its job, with the handler's traceback either way (the
        store keeps it too, in the run)."""
        trace = f"\n{failure.traceback.rstrip()}" if failure.traceback else ""
        if outcome.will_retry:
            self._logger.warning(
                "job %s (%s) attempt %d failed (%s): %s; retrying at %s%s",
                job.id,
                job.type,
                job.attempts,
                failure.kind,
                failure.error,
                outcome.job.run_at.isoformat(),
                trace,
            )
            return
        if outcome.job.status is JobStatus.CANCELED:
            self._logger.warning(
                "job %s (%s) attempt %d failed (%s) after cancel_job: %s; canceled, not retried%s",
                job.id,
                job.type,
                job.attempts,
                failure.kind,
                failure.error,
                trace,
            )
            return
        self._logger.error(
            "job %s (%s) attempt %d failed for good (%s): %s; dead-lettered%s",
            job.id,
            job.type,
            job.attempts,
            failure.kind,
            outcome.job.fail_reason or failure.error,
            trace,
        )

    def _hand_back(self, running: RunningJob) -> None:
        """A prefetched job waited too long for a slot (the handlers got slow): give it back to
        the queue, attempt not charged, so an idle worker can run it. Batched: the jobs of one
        claim time out together."""
        self._hand_backs.append(running)
        if self._hand_back_task is None or self._hand_back_task.done():
            self._hand_back_task = asyncio.get_running_loop().create_task(
                self._flush_hand_backs(), name="timecrisis-hand-back"
            )

    async def _flush_hand_backs(self) -> None:
        while self._hand_backs:
            batch, self._hand_backs = self._hand_backs, []
            # Only jobs still held by this run (a lost lease may have dropped one meanwhile).
            batch = [r for r in batch if self.running.get(r.job.id) is r]
            if batch:
                await self._release(batch, why=f"(waited {MAX_WAIT:g}s for a free slot)")
                self._wake.set()

    # ---- completing --------------------------------------------------------------------------

    def _queue_completion(self, running: RunningJob, completion: Completion) -> None:
        self._pending_completions.append((running, completion))
        running.finishing = True
        self._finishing += 1
        self._wake.set()  # its slot is free: claim the next job
        claiming = self._main_task is not None and not self._main_task.done()
        if self._combine is None or self._stopping or not claiming:
            self._start_flusher()  # else the claim loop writes it with its next claim

    def _start_flusher(self) -> None:
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(
                self._flush_completions(), name="timecrisis-complete"
            )

    async def _drain_completions(self) -> None:
        """At stop: write the queued completions, within the stop's budget; what is still
        unwritten then is logged and dropped (the leases expire, the leader recovers it)."""
        while True:
            if self._pending_completions:
                self._start_flusher()
            task = self._flush_task
            if task is None or task.done():
                break
            try:
                await self._bounded(asyncio.wait([task]))
            except TimeoutError:
                task.cancel()  # the flusher puts its batch in flight back on the queue
                await asyncio.wait([task], timeout=FLOOR)
                break
        if self._pending_completions:
            unwritten, self._pending_completions = self._pending_completions, []
            self._logger.error(
                "could not record %d completion(s) at stop (%s); their leases expire and the "
                "leader recovers them",
                len(unwritten),
                ", ".join(f"job {r.job.id} ({r.job.type})" for r, _ in unwritten[:10])
                + (", ..." if len(unwritten) > 10 else ""),
            )
            for running, _ in unwritten:
                self._forget(running)
        if self._hook_tasks:
            with contextlib.suppress(TimeoutError):
                await self._bounded(asyncio.wait(self._hook_tasks))

    def _after_completions(
        self, batch: list[tuple[RunningJob, Completion]], results: list[datetime | None]
    ) -> None:
        """Completions written by the claim loop: free their entries now; their hooks run in a
        task of their own, so a slow hook never delays launching the claimed jobs."""
        finished = self._record_completions(batch, results)
        hook = self.runtime.hooks.on_job_completed
        if hook is not None and finished:
            task = asyncio.get_running_loop().create_task(
                self._call_completed_hooks(finished), name="timecrisis-completed-hooks"
            )
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    async def _flush_completions(self) -> None:
        backoff = ErrorBackoff(cap=2.0)
        while self._pending_completions:
            batch, self._pending_completions = self._pending_completions, []
            try:
                results = await self.runtime.storage.complete_jobs([c for _, c in batch])
            except asyncio.CancelledError:  # a stop gave up on the store: keep the batch
                self._pending_completions[:0] = batch
                raise
            except Exception as exc:  # noqa: BLE001 - keep the batch and try again
                self._pending_completions[:0] = batch
                delay = backoff.next_delay()
                self._logger.warning(
                    "recording %d completion(s) failed (%s: %s); retrying in %.1fs",
                    len(batch),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            await self._call_completed_hooks(self._record_completions(batch, results))
            self._wake.set()

    def _record_completions(
        self, batch: list[tuple[RunningJob, Completion]], results: list[datetime | None]
    ) -> list[Job]:
        """Forget the written jobs; return them as finished, for `on_job_completed` (none
        without a hook: building them is the only per-job cost here)."""
        hook = self.runtime.hooks.on_job_completed
        finished: list[Job] = []
        for (running, completion), finished_at in zip(batch, results, strict=True):
            self._forget(running)
            if finished_at is None:
                self._logger.warning(
                    "job %s (%s) finished after its lease was lost; the result was discarded",
                    running.job.id,
                    running.job.type,
                )
                continue
            if hook is not None:
                status = JobStatus.CANCELED if completion.canceled else JobStatus.COMPLETED
                finished.append(
                    running.job.model_copy(
                        update={
                            "status": status,
                            "finished_at": finished_at,
                            "result": completion.result,
                            "progress": 100.0 if not completion.canceled else running.job.progress,
                        }
                    )
                )
        return finished

    async def _call_completed_hooks(self, finished: list[Job]) -> None:
        hook = self.runtime.hooks.on_job_completed
        for job in finished:
            await call_hook(self._logger, "on_job_completed", hook, job)

    # ---- leases ------------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        interval = self.runtime.settings.lease_renewal_interval
        while True:
            await asyncio.sleep(interval)
            if self.running:
                try:
                    # No answer within a round is a failure too: a dropped link may never
                    # raise, and the lease must still be given up once the TTL has passed.
                    # asyncio.timeout, not wait_for: see wait_for_event.
                    async with asyncio.timeout(interval):
                        await self.renew(list(self.running.values()))
                except Exception as exc:  # noqa: BLE001 - try again next round
                    self._logger.warning(
                        "renewing %d lease(s) failed (%s: %s)",
                        len(self.running),
                        type(exc).__name__,
                        exc,
                    )
                    self._expire_overdue_locally()

    async def renew(self, jobs: list[RunningJob]) -> None:
        if not jobs:
            return
        result = await self.runtime.storage.renew_claims(
            [r.ref for r in jobs], self.runtime.settings.job_lock_ttl
        )
        now = time.monotonic()
        for running in jobs:
            if running.job.id in result.valid:
                running.last_renewed = now
                if running.job.id in result.cancel_requested:
                    # Asked on any node: this is how a cancel reaches a worker elsewhere.
                    running.state.cancelled = True
                    if running.job.id in result.terminate_requested:
                        self._terminate(running)
            elif self.running.get(running.job.id) is running:
                self.mark_lease_lost(running)

    def _expire_overdue_locally(self) -> None:
        """When the store cannot be reached for longer than the lease, assume the lease is gone:
        another worker may already run the job, so this one must stop acting on it."""
        ttl = self.runtime.settings.job_lock_ttl.total_seconds()
        now = time.monotonic()
        for running in list(self.running.values()):
            if now - running.last_renewed > ttl:
                self.mark_lease_lost(running)

    def mark_lease_lost(self, running: RunningJob) -> None:
        if running.state.lease_lost:
            return
        if running.settling:
            # Its outcome is being written, and that write ends the lease: a renewal (or a
            # claim of the retried job) answering in between sees the lease gone without any
            # loss. The write itself is fenced and reports a real loss ("finished after its
            # lease was lost"), so nothing is abandoned and nothing is logged here.
            return
        running.state.lease_lost = True
        self._logger.warning(
            "lost the lease of job %s (%s); abandoning this run",
            running.job.id,
            running.job.type,
        )
        task = running.task
        if task is not None and not task.done():
            running.abandoned = True
            task.cancel()
        self._forget(running)
        self._wake.set()

    def _forget(self, running: RunningJob) -> None:
        if running.finishing:
            running.finishing = False
            self._finishing -= 1
        # Only this run's own entry: a later run of the same job may hold the slot by now.
        if self.running.get(running.job.id) is running:
            del self.running[running.job.id]

    def request_cancel(self, job_id: str, *, terminate: bool = False) -> None:
        """`cancel_job` on a job this worker runs: tell its handler now, not at the next renewal
        (a worker on another node learns it from `renew_claims`)."""
        running = self.running.get(job_id)
        if running is not None:
            running.state.cancelled = True
            if terminate:
                self._terminate(running)

    def _terminate(self, running: RunningJob) -> None:
        """Stop a cancelled job's handler without waiting for it to notice. An async handler's
        task is cancelled (`asyncio.CancelledError` inside it); a fork-mode child is killed by
        its supervisor, which watches `state.terminate`; a started sync handler cannot be
        stopped (a thread cannot be killed): it ends `canceled` when it returns."""
        state = running.state
        if state.terminate:
            return
        state.terminate = True
        task = running.task
        if task is None or task.done() or running.handler_done or running.abandoned:
            return
        if running.started is not None and not self._interruptible(running):
            return
        running.terminated = True
        task.cancel()

    def _interruptible(self, running: RunningJob) -> bool:
        """Whether cancelling the job's task stops its handler: an async handler in this
        process. A fork-mode child is killed through `state.terminate` instead, so its exit is
        collected; a thread would only be abandoned, still running, with its slot given back."""
        definition = running.definition
        if definition.fork_mode and self.runtime.extras.get("fork_runner") is not None:
            return False
        return definition.is_async
