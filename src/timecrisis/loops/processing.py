"""The worker: claim jobs, run them, renew their leases, record how they ended.

`JobProcessor` wires four parts that share one table of held jobs (`_held.Held`, each job in
one explicit `Phase`) and talk through small queues:

- the **claimer** (`_claimer.py`): room and prefetch, the claim loop and its due-time sleeps,
  `complete_and_claim` (completions and the next claim in one transaction);
- the **slot pool** (`_attempts.py`): `max_concurrent_jobs` slots; each attempt runs through
  its job type's `Executor` (`execution/executors.py`), and hands its end to the writer before
  giving its slot back;
- the **end writer** (`_writer.py`): completions batched, failures and snoozes one job each,
  releases and hand-backs; a write that keeps failing is left to lease expiry;
- the **lease keeper** (`_leases.py`): one `renew_claims` per round for every held job; a lost
  lease abandons the run.

Nothing here may die: a storage error backs off and retries; a handler or hook error is
recorded or logged. No guarantee rests on a slot: until its end is written the store counts
a job as running (a per-type limit only looks fuller than it is) and its lease is renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from timecrisis._logging import child
from timecrisis.loops._attempts import Attempts
from timecrisis.loops._claimer import Claimer
from timecrisis.loops._held import Held, RunningJob
from timecrisis.loops._leases import LeaseKeeper
from timecrisis.loops._prefetch import PrefetchBudget
from timecrisis.loops._stopping import StopBudget
from timecrisis.loops._writer import EndWriter, Releases
from timecrisis.loops.runtime import Runtime

__all__ = ["JobProcessor", "RunningJob"]


class JobProcessor:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        logger = child(runtime.logger, "worker")
        self._held = held = Held()
        self._leases = LeaseKeeper(runtime, held, logger)
        self._releases = Releases(runtime, held, logger)
        # The writer learns of due times through the claimer, built after it (see below).
        self._writer = EndWriter(runtime, held, logger, lambda at: self.claimer.note_due_at(at))
        budget = PrefetchBudget(concurrency=1, ceiling=0)
        self._attempts = Attempts(
            runtime,
            logger,
            writer=self._writer,
            releases=self._releases,
            leases=self._leases,
            budget=budget,
        )
        self.claimer = Claimer(
            runtime,
            held,
            logger,
            attempts=self._attempts,
            writer=self._writer,
            releases=self._releases,
            leases=self._leases,
        )
        self._writer.rides = self.claimer.rides_completions

    @property
    def running(self) -> dict[str, RunningJob]:
        """The jobs this worker holds, by id (running, waiting for a slot, or settling)."""
        return self._held.jobs

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._held.shutting_down = False
        settings = self.runtime.settings
        budget = PrefetchBudget(
            concurrency=settings.max_concurrent_jobs, ceiling=settings.prefetch_ceiling
        )
        self._attempts.start(settings.max_concurrent_jobs, budget)
        self.claimer.start(budget)
        self._leases.start()

    def wake(self) -> None:
        self._held.wake.set()

    async def stop(self, *, force: bool, timeout: float, budget: StopBudget | None = None) -> None:
        """Stop claiming; let running handlers finish for up to `timeout` seconds (not at all
        with `force`); then give what still runs back to the store without charging an attempt.

        Bounded even when the store does not answer: every store call here runs under
        `budget` (see loops/_stopping.py), and what could not be written is logged at ERROR
        and left to lease expiry."""
        budget = budget if budget is not None else StopBudget(timeout, force=force)
        held = self._held
        held.budget = budget
        held.shutting_down = True
        for running in held.jobs.values():
            running.state.shutting_down = True
        await self.claimer.end(budget)

        # Prefetched jobs that have not started go back to the queue now, not after the wait:
        # another worker can run them while this one finishes its handlers.
        unstarted = [r for r in held.unfinished() if r.started is None]
        if unstarted:
            await self._abandon(unstarted, budget)
            await self._releases.release(unstarted)

        await budget.wait_for_handlers([r.task for r in held.unfinished() if r.task is not None])
        budget.end_wait()

        leftovers = held.unfinished()
        if leftovers:
            await self._abandon(leftovers, budget)
        unwritten = await self._writer.drain()
        await self._releases.end_hand_backs()
        if leftovers or unwritten:
            await self._releases.release(leftovers + unwritten)
        await self._leases.stop()
        held.budget = None

    @staticmethod
    async def _abandon(jobs: list[RunningJob], budget: StopBudget) -> None:
        """Cancel the jobs' tasks and let them unwind (a fork-mode child is terminated),
        within budget."""
        for running in jobs:
            running.abandon()
        tasks = [r.task for r in jobs if r.task is not None]
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with budget.bounded(cap=5):
                    await asyncio.wait(tasks)

    def running_handlers(self) -> int:
        """Jobs whose handler runs now (not prefetched, not finished)."""
        return sum(1 for r in self._held.unfinished() if r.started is not None and not r.settling)

    # ---- what the scheduler tells the worker -------------------------------------------------

    def note_due_at(self, at: datetime) -> None:
        self.claimer.note_due_at(at)

    def note_due_in(self, seconds: float) -> None:
        self.claimer.note_due_in(seconds)

    def request_cancel(self, job_id: str, *, terminate: bool = False) -> None:
        """`cancel_job` on a job this worker runs: tell its handler now, not at the next renewal
        (a worker on another node learns it from `renew_claims`)."""
        running = self._held.jobs.get(job_id)
        if running is not None:
            running.request_cancel(terminate=terminate)

    async def renew(self, jobs: list[RunningJob]) -> None:
        await self._leases.renew(jobs)
