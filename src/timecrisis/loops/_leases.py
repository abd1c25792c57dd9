"""The lease keeper: one `renew_claims` call for every held job each `job_lock_ttl / 3`.

Leases are renewed here, not by the handler, independent of what the handlers do: a busy
handler cannot starve its own lease as long as the event loop runs (fork mode removes even that
condition). A renewal also carries `cancel_job` from other nodes. A job whose lease is gone is
abandoned: another worker may run it now, so this one must stop acting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from timecrisis.loops._held import Held, RunningJob
from timecrisis.loops._periodic import wait_for_event
from timecrisis.loops.runtime import Runtime


class LeaseKeeper:
    def __init__(self, runtime: Runtime, held: Held, logger: logging.Logger) -> None:
        self.runtime = runtime
        self._held = held
        self._logger = logger
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    def start(self) -> None:
        self._stopped.clear()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="timecrisis-renew")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A cancellation lost inside a renewal (a library call can swallow one) must not
            # keep the loop going: it ends at its next turn (as `PeriodicLoop` does).
            self._stopped.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        interval = self.runtime.settings.lease_renewal_interval
        jobs = self._held.jobs
        while asyncio.current_task() is self._task:
            await wait_for_event(self._stopped, interval)
            if jobs and not self._stopped.is_set():
                try:
                    # No answer within a round is a failure too: a dropped link may never
                    # raise, and the lease must still be given up once the TTL has passed.
                    # asyncio.timeout, not wait_for: see wait_for_event.
                    async with asyncio.timeout(interval):
                        await self.renew(list(jobs.values()))
                except Exception as exc:  # noqa: BLE001 - try again next round
                    self._logger.warning(
                        "renewing %d lease(s) failed (%s: %s)",
                        len(jobs),
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
            job_id = running.job.id
            if job_id in result.valid:
                running.last_renewed = now
                if job_id in result.cancel_requested:
                    # Asked on any node: this is how a cancel reaches a worker elsewhere.
                    running.request_cancel(terminate=job_id in result.terminate_requested)
            elif self._held.holds(running):
                self.mark_lost(running)

    def _expire_overdue_locally(self) -> None:
        """When the store cannot be reached for longer than the lease, assume the lease is gone:
        another worker may already run the job, so this one must stop acting on it."""
        ttl = self.runtime.settings.job_lock_ttl.total_seconds()
        now = time.monotonic()
        for running in list(self._held.jobs.values()):
            if now - running.last_renewed > ttl:
                self.mark_lost(running)

    def mark_lost(self, running: RunningJob) -> None:
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
        running.abandon()
        self._held.forget(running)
        self._held.wake.set()
