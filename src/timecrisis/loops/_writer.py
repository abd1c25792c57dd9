"""How runs end, written to the store: the completion writer and the releases.

`EndWriter` takes every ended attempt the same way: the job settles (`Held.settle`: its slot is
freed at once, before anything is written) and its end is queued.

- **Completions are batched**: one flusher writes everything queued in one `complete_jobs`
  call; completions that arrive meanwhile wait for the next call. With `complete_and_claim`
  (PostgreSQL) the claim loop takes the queue instead and writes it with its next claim, in one
  transaction (`_claimer.py`); the flusher takes over when the loop will not claim or after a
  combined call failed. A store that refuses completions cannot make the worker claim without
  end: jobs awaiting their write stay held (`Claimer._room` bounds them).
- **Failures and snoozes** are written one job each (`fail_job`, `snooze_job`: the store has no
  batch form of them), each in a task of its own, retried a few times; a write that keeps
  failing is abandoned: the lease then expires and the leader's reaper takes the job back
  (at-least-once, never lost).

`Releases` gives held jobs back to the queue without charging an attempt: at stop, and for
prefetched jobs that waited longer than `_prefetch.MAX_WAIT` for a slot (batched).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from timecrisis.errors import Snooze
from timecrisis.hooks import call_hook
from timecrisis.loops._held import Held, RunningJob, describe
from timecrisis.loops._periodic import ErrorBackoff
from timecrisis.loops._prefetch import MAX_WAIT
from timecrisis.loops._stopping import FLOOR
from timecrisis.loops.runtime import Runtime
from timecrisis.models import Job, JobStatus
from timecrisis.storage.base import Completion, FailOutcome, Failure

# How often to retry writing a failure before leaving the job to lease expiry.
_FAIL_WRITE_ATTEMPTS = 5

T = TypeVar("T")
Batch = list[tuple[RunningJob, Completion]]


class EndWriter:
    def __init__(
        self,
        runtime: Runtime,
        held: Held,
        logger: logging.Logger,
        note_due_at: Callable[[datetime], None],
    ) -> None:
        self.runtime = runtime
        self._held = held
        self._logger = logger
        self._note_due_at = note_due_at  # a retry or snooze written here: wake at its run_at
        # Whether the claim loop will write the queued completions with its next claim.
        self.rides: Callable[[], bool] = lambda: False
        self._pending: Batch = []
        self._flush_task: asyncio.Task[None] | None = None
        self._ends: set[asyncio.Task[None]] = set()  # failure and snooze writes
        self._unwritten: list[RunningJob] = []  # failure and snooze writes a stop cut short
        self._hook_tasks: set[asyncio.Task[None]] = set()

    # ---- queueing an end (from the attempt, before its slot is freed) -----------------------

    def complete(self, running: RunningJob, completion: Completion) -> None:
        self._held.settle(running)
        self._pending.append((running, completion))
        if not self.rides():
            self._start_flusher()

    def fail(self, running: RunningJob, failure: Failure, exc: BaseException) -> None:
        self._held.settle(running)
        self._spawn(self._write_failure(running, failure, exc), "timecrisis-fail")

    def snooze(self, running: RunningJob, snooze: Snooze) -> None:
        self._held.settle(running)
        self._spawn(self._write_snooze(running, snooze), "timecrisis-snooze")

    def _spawn(self, write: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(write, name=name)
        self._ends.add(task)
        task.add_done_callback(self._ends.discard)

    # ---- the claim loop's share (complete_and_claim) -----------------------------------------

    def take_completions(self) -> Batch:
        batch, self._pending = self._pending, []
        return batch

    def put_back(self, batch: Batch, *, flush: bool) -> None:
        """A combined call did not write `batch`: first in line again; with `flush`, written
        alone from now on (a claim that keeps failing must not hold them back)."""
        self._pending[:0] = batch
        if flush:
            self._start_flusher()

    def flush_pending(self) -> None:
        """The claim loop will not claim now: nothing to ride on."""
        if self._pending:
            self._start_flusher()

    def written(self, batch: Batch, results: list[datetime | None]) -> None:
        """Completions written by the claim loop: free their entries now; their hooks run in a
        task of their own, so a slow hook never delays launching the claimed jobs."""
        finished = self._record_completions(batch, results)
        if self.runtime.hooks.on_job_completed is not None and finished:
            task = asyncio.get_running_loop().create_task(
                self._call_completed_hooks(finished), name="timecrisis-completed-hooks"
            )
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    # ---- completions -------------------------------------------------------------------------

    def _start_flusher(self) -> None:
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(
                self._flush_completions(), name="timecrisis-complete"
            )

    async def _flush_completions(self) -> None:
        backoff = ErrorBackoff(cap=2.0)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self.runtime.storage.complete_jobs([c for _, c in batch])
            except asyncio.CancelledError:  # a stop gave up on the store: keep the batch
                self._pending[:0] = batch
                raise
            except Exception as exc:  # noqa: BLE001 - keep the batch and try again
                self._pending[:0] = batch
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
            self._held.wake.set()

    def _record_completions(self, batch: Batch, results: list[datetime | None]) -> list[Job]:
        """Forget the written jobs; return them as finished, for `on_job_completed` (none
        without a hook: building them is the only per-job cost here)."""
        hook = self.runtime.hooks.on_job_completed
        finished: list[Job] = []
        for (running, completion), finished_at in zip(batch, results, strict=True):
            self._held.forget(running)
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

    # ---- failures and snoozes ----------------------------------------------------------------

    async def _write_failure(
        self, running: RunningJob, failure: Failure, exc: BaseException
    ) -> None:
        job = running.job
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
            self._note_due_at(outcome.job.run_at)
        self._log_failure(job, failure, outcome)
        await self.runtime.job_failed(self._logger, outcome.job, exc)

    async def _write_snooze(self, running: RunningJob, snooze: Snooze) -> None:
        """The handler raised `Snooze`: the job goes back to pending, due after the delay, the
        attempt not charged; no `on_job_failed` (nothing failed)."""
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
            self._note_due_at(snoozed.run_at)  # wake at its run_at, not the interval
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
            except asyncio.CancelledError:  # a stop gave up on the store: it releases the job
                self._unwritten.append(running)
                raise
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
                    self._done(running)
                    return False, None
                try:
                    await asyncio.sleep(backoff.next_delay())
                except asyncio.CancelledError:
                    self._unwritten.append(running)
                    raise
            else:
                self._done(running)
                return True, result
        raise AssertionError("unreachable: the last attempt returns")

    def _done(self, running: RunningJob) -> None:
        self._held.forget(running)
        self._held.wake.set()

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

    # ---- at stop -----------------------------------------------------------------------------

    async def drain(self) -> list[RunningJob]:
        """At stop: write what is queued, within the stop's budget. Unwritten completions are
        logged and dropped (their leases expire, the leader recovers them); the jobs whose
        failure or snooze could not be written are returned, for the stop to release."""
        await self._drain_completions()
        if self._ends:
            ends = set(self._ends)
            try:
                await self._held.bounded(asyncio.wait(ends))
            except TimeoutError:
                for task in ends:
                    task.cancel()
                await asyncio.wait(ends, timeout=FLOOR)
        if self._hook_tasks:
            with contextlib.suppress(TimeoutError):
                await self._held.bounded(asyncio.wait(self._hook_tasks))
        unwritten, self._unwritten = self._unwritten, []
        return [r for r in unwritten if self._held.holds(r)]

    async def _drain_completions(self) -> None:
        while True:
            if self._pending:
                self._start_flusher()
            task = self._flush_task
            if task is None or task.done():
                break
            try:
                await self._held.bounded(asyncio.wait([task]))
            except TimeoutError:
                task.cancel()  # the flusher puts its batch in flight back on the queue
                await asyncio.wait([task], timeout=FLOOR)
                break
        if self._pending:
            unwritten, self._pending = self._pending, []
            self._logger.error(
                "could not record %d completion(s) at stop (%s); their leases expire and the "
                "leader recovers them",
                len(unwritten),
                ", ".join(f"job {r.job.id} ({r.job.type})" for r, _ in unwritten[:10])
                + (", ..." if len(unwritten) > 10 else ""),
            )
            for running, _ in unwritten:
                self._held.forget(running)


class Releases:
    """Held jobs back to pending, attempt not charged (`release_jobs`)."""

    def __init__(self, runtime: Runtime, held: Held, logger: logging.Logger) -> None:
        self.runtime = runtime
        self._held = held
        self._logger = logger
        self._hand_backs: list[RunningJob] = []
        self._hand_back_task: asyncio.Task[None] | None = None

    async def release(self, jobs: list[RunningJob], *, why: str = "at stop") -> None:
        refs = [r.ref for r in jobs]
        try:
            results = await self._held.bounded(self.runtime.storage.release_jobs(refs))
        except Exception as exc:  # noqa: BLE001 - the leases will expire and the reaper recovers
            self._logger.error(
                "could not release %d job(s) %s: %s; their leases expire and the leader "
                "recovers them",
                len(refs),
                why,
                describe(exc),
            )
            results = [False] * len(refs)
        for running, released in zip(jobs, results, strict=True):
            self._held.forget(running)
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

    def hand_back(self, running: RunningJob) -> None:
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
            batch = [r for r in batch if self._held.holds(r)]
            if batch:
                await self.release(batch, why=f"(waited {MAX_WAIT:g}s for a free slot)")
                self._held.wake.set()

    async def end_hand_backs(self) -> None:
        task = self._hand_back_task
        if task is None or task.done():
            return
        with contextlib.suppress(TimeoutError):
            await self._held.bounded(asyncio.wait([task]))
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=FLOOR)
