"""What the worker holds: its claimed jobs, each in one explicit `Phase`, and the signals its
parts share (the wake-up event, the stop's budget). Every part of the worker (`processing.py`)
reads and changes the jobs through this table only."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from timecrisis.context import JobState
from timecrisis.definitions import JobDefinition
from timecrisis.execution.executors import Executor
from timecrisis.loops._stopping import StopBudget
from timecrisis.models import Job
from timecrisis.storage.base import ClaimedJob, ClaimRef

T = TypeVar("T")


class Phase(enum.Enum):
    WAITING = "waiting"
    """Claimed; waits for a slot (prefetched) or is about to take one."""
    RUNNING = "running"
    """Holds a slot: the `on_job_started` hook, then the handler."""
    TERMINATED = "terminated"
    """Its task was cancelled by `cancel_job(terminate=True)`: the job ends canceled."""
    SETTLING = "settling"
    """The handler ended; how it ended is queued or being written. The slot is free already."""
    ABANDONED = "abandoned"
    """Its task was cancelled on purpose (lease lost, stop): nothing is written for this run."""
    DONE = "done"
    """Its end was written (or given up): no longer held."""


@dataclass(eq=False, slots=True)
class RunningJob:
    claimed: ClaimedJob
    definition: JobDefinition[Any]
    executor: Executor
    state: JobState
    task: asyncio.Task[None] | None = None
    phase: Phase = Phase.WAITING
    last_renewed: float = field(default_factory=time.monotonic)
    # When the handler got its slot (monotonic); None while the job waits, prefetched.
    started: float | None = None

    @property
    def settling(self) -> bool:
        """The handler has ended and its outcome is being written: a renewal that finds the
        lease gone may just have raced that write (which ends the lease), so it proves no
        loss; the write itself reports a real one."""
        return self.phase is Phase.SETTLING

    @property
    def ref(self) -> ClaimRef:
        return self.claimed.ref

    @property
    def job(self) -> Job:
        return self.claimed.job

    def abandon(self) -> None:
        """Cancel the run on purpose (a lost lease, a stop): nothing is written for it."""
        task = self.task
        if task is not None and not task.done() and self.phase is not Phase.SETTLING:
            self.phase = Phase.ABANDONED
            task.cancel()

    def request_cancel(self, *, terminate: bool) -> None:
        """`cancel_job` reached this run (here, or through `renew_claims` from elsewhere)."""
        self.state.cancelled = True
        if terminate:
            self._terminate()

    def _terminate(self) -> None:
        """Stop the handler without waiting for it to notice, where cancelling its task does
        that (`Executor.interruptible`: an async handler). A fork-mode child is killed by its
        supervisor, which watches `state.terminate`; a started sync handler cannot be stopped
        (a thread cannot be killed): it ends `canceled` when it returns. A job still waiting
        for its slot is cancelled whatever its executor."""
        state = self.state
        if state.terminate:
            return
        state.terminate = True
        task = self.task
        if task is None or task.done():
            return
        interrupts = self.phase is Phase.WAITING or (
            self.phase is Phase.RUNNING and self.executor.interruptible
        )
        if interrupts:
            self.phase = Phase.TERMINATED
            task.cancel()


class Held:
    """The worker's claimed jobs by id, and what its parts share."""

    def __init__(self) -> None:
        self.jobs: dict[str, RunningJob] = {}
        self.settling = 0  # entries in Phase.SETTLING (their slot is free, their end unwritten)
        self.wake = asyncio.Event()  # the claim loop: look again (slot freed, work enqueued)
        self.shutting_down = False
        self.budget: StopBudget | None = None  # set while stop() runs

    def add(self, running: RunningJob) -> None:
        running.state.shutting_down = self.shutting_down
        self.jobs[running.job.id] = running

    def holds(self, running: RunningJob) -> bool:
        """This run's own entry (a later run of the same job may hold the id by now)."""
        return self.jobs.get(running.job.id) is running

    def settle(self, running: RunningJob) -> None:
        """The handler ended; its end is queued. Called before the slot is given back."""
        if running.phase is not Phase.SETTLING:
            running.phase = Phase.SETTLING
            self.settling += 1
        self.wake.set()  # its slot is free: claim the next job

    def forget(self, running: RunningJob) -> None:
        if running.phase is Phase.SETTLING:
            running.phase = Phase.DONE
            self.settling -= 1
        if self.holds(running):
            del self.jobs[running.job.id]

    def unfinished(self) -> list[RunningJob]:
        """Jobs whose task still runs (started or waiting for a slot) and was not abandoned."""
        return [
            r
            for r in self.jobs.values()
            if r.task is not None and not r.task.done() and r.phase is not Phase.ABANDONED
        ]

    async def bounded(self, call: Awaitable[T]) -> T:
        """A store call; during a stop, within the stop's budget (a dead store must not hold
        the stop). Raises TimeoutError when the budget runs out."""
        budget = self.budget
        if budget is None:
            return await call
        async with budget.bounded():
            return await call


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "the store did not answer in time"
    return f"{type(exc).__name__}: {exc}"
