"""The slot pool: each claimed job's task waits for one of `max_concurrent_jobs` slots, runs its
attempt through the job type's `Executor`, and hands how it ended to the `EndWriter`
(completion, failure or snooze alike) before giving the slot back, so the next claim never
waits for that write. A prefetched job that waits longer than `_prefetch.MAX_WAIT` for a slot
is handed back to the queue. A handler's error fails its attempt, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import ValidationError

from timecrisis import _tracing
from timecrisis._logging import child
from timecrisis.context import JobContext
from timecrisis.definitions import to_json_result
from timecrisis.errors import NonRetryableError, Retry, Snooze
from timecrisis.execution.failures import failure_kind, failure_traceback
from timecrisis.hooks import call_hook
from timecrisis.loops._held import Phase, RunningJob
from timecrisis.loops._leases import LeaseKeeper
from timecrisis.loops._prefetch import MAX_WAIT, PrefetchBudget
from timecrisis.loops._writer import EndWriter, Releases
from timecrisis.loops.runtime import Runtime
from timecrisis.models import JsonValue, LogLevel
from timecrisis.storage.base import Completion, Failure, NewLogEntry


class _StorageOps:
    """`JobContext` operations for an in-process handler: straight to the store."""

    def __init__(self, runtime: Runtime, leases: LeaseKeeper, running: RunningJob) -> None:
        self._runtime = runtime
        self._leases = leases
        self._running = running

    async def log(
        self, level: LogLevel, message: str, metadata: dict[str, JsonValue] | None
    ) -> None:
        ref = self._running.ref
        entry = NewLogEntry(ref.job_id, ref.run_id, level, message, metadata)
        await self._runtime.storage.append_logs([entry])

    async def touch(self) -> None:
        await self._leases.renew([self._running])

    async def update_progress(self, percent: float) -> None:
        if not await self._runtime.storage.update_progress(self._running.ref, percent):
            self._leases.mark_lost(self._running)


class Attempts:
    def __init__(
        self,
        runtime: Runtime,
        logger: logging.Logger,
        *,
        writer: EndWriter,
        releases: Releases,
        leases: LeaseKeeper,
        budget: PrefetchBudget,
    ) -> None:
        self.runtime = runtime
        self._logger = logger
        self._writer = writer
        self._releases = releases
        self._leases = leases
        self.budget = budget
        self._slots: asyncio.Semaphore | None = None  # one per handler allowed to run

    def start(self, slots: int, budget: PrefetchBudget) -> None:
        self._slots = asyncio.Semaphore(slots)
        self.budget = budget

    def launch(self, running: RunningJob) -> None:
        running.task = asyncio.get_running_loop().create_task(
            self._execute(running), name=f"timecrisis-job-{running.job.id}"
        )

    async def _execute(self, running: RunningJob) -> None:
        try:
            await self._in_slot(running)
        except asyncio.CancelledError:
            if running.phase is not Phase.TERMINATED:
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
        self._writer.complete(running, Completion(running.ref, None, canceled=True))

    async def _in_slot(self, running: RunningJob) -> None:
        slots = self._slots
        assert slots is not None, "start() creates the slots"
        if slots.locked():  # a prefetched job: wait for a slot, for MAX_WAIT at most
            try:
                async with asyncio.timeout(MAX_WAIT):
                    await slots.acquire()
            except TimeoutError:
                self._releases.hand_back(running)
                return
            except asyncio.CancelledError:
                if running.phase is Phase.ABANDONED:
                    return  # stop() or a lost lease: they handle the job
                raise
        else:  # a free slot: taken at once, without arming a timer on the per-job path
            await slots.acquire()
        running.started = time.monotonic()
        if running.phase is Phase.WAITING:
            running.phase = Phase.RUNNING
        try:
            await self._attempt(running)
        finally:
            slots.release()

    async def _attempt(self, running: RunningJob) -> None:
        job = running.job
        if running.state.cancelled:  # cancelled while it waited for a slot: do not start it
            self._writer.complete(running, Completion(running.ref, None, canceled=True))
            return
        hooks = self.runtime.hooks
        await call_hook(self._logger, "on_job_started", hooks.on_job_started, job)
        began = time.monotonic()
        self._logger.debug("job %s (%s) started", job.id, job.type)
        try:
            with _tracing.attempt(job, self.runtime.worker, running.state):  # no-op without OTel
                result = await self._run_handler(running)
        except asyncio.CancelledError:
            if running.phase is Phase.ABANDONED:
                return  # stop() or a lost lease cancelled us on purpose; they handle the job
            raise
        except Exception as exc:  # noqa: BLE001 - a handler's error fails its attempt, nothing more
            self.budget.record(time.monotonic() - began)
            if running.phase is Phase.ABANDONED:
                return
            if isinstance(exc, Snooze):  # not a failure: the handler gives the job back
                self._writer.snooze(running, exc)
            else:
                self._writer.fail(running, _failure(running, exc), exc)
            return
        took = time.monotonic() - began
        self.budget.record(took)
        if running.phase is Phase.ABANDONED:
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
        self._writer.complete(
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
            ops=_StorageOps(self.runtime, self._leases, running),
            state=running.state,
            loop=asyncio.get_running_loop(),
        )
        return await running.executor.run(definition, job, ctx, running.state)


def _failure(running: RunningJob, exc: BaseException) -> Failure:
    return Failure(
        running.ref,
        f"{type(exc).__name__}: {exc}",
        retryable=not isinstance(exc, NonRetryableError),
        kind=failure_kind(exc),
        traceback=failure_traceback(exc),
        retry_in=exc.delay if isinstance(exc, Retry) else None,
    )
