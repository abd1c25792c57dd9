"""The claimer: how many jobs to claim (room, prefetch), the claim loop, its due-time sleeps.

- **Claim in batches.** One `claim_jobs` call asks for every free slot at once; the store
  enforces per-type limits inside that call. A full batch means more work may be waiting, so
  the loop claims again at once; otherwise it sleeps until woken (an enqueue here or, through
  the store's wake-up channel, elsewhere; a slot freeing up), until the earliest due time it
  knows (`loops/_due.py`), or at most `job_processing_interval`.
- **Prefetch while jobs are short** (`_prefetch.PrefetchBudget`): a claim may take more jobs
  than there are free slots; they wait in the slot pool. The buffer is refilled in chunks of at
  least half its size, so claims stay large.
- **One commit for both.** A store with `complete_and_claim` (PostgreSQL) gets the queued
  completions and the next claim in one call, one transaction (docs/performance.md, W2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime

from timecrisis.context import JobState
from timecrisis.loops._attempts import Attempts
from timecrisis.loops._due import Anchor, DueTimes
from timecrisis.loops._held import Held, RunningJob
from timecrisis.loops._leases import LeaseKeeper
from timecrisis.loops._periodic import ErrorBackoff, wait_for_event
from timecrisis.loops._prefetch import PrefetchBudget
from timecrisis.loops._stopping import FLOOR, GRACE, StopBudget
from timecrisis.loops._writer import Batch, EndWriter, Releases
from timecrisis.loops.runtime import Runtime
from timecrisis.rate_limits import RateLimit
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimParams,
    CompleteAndClaim,
    JobStorage,
    combined_claim,
)

# How long one reading of the store's clock serves to turn store times into sleeps. Not one
# reading per sleep: under load that would double the round trips of a claim loop that knows
# of a retry due later. The clocks do not drift apart measurably in this time; a stepped
# clock costs at most one early claim, then the interval.
_ANCHOR_MAX_AGE = 10.0


def combined_call(storage: JobStorage) -> CompleteAndClaim | None:
    """The one place that asks a store for `complete_and_claim`: by its declared capability,
    never by probing for the method (every store built on the shared facade has one)."""
    return combined_claim(storage)


class Claimer:
    def __init__(
        self,
        runtime: Runtime,
        held: Held,
        logger: logging.Logger,
        *,
        attempts: Attempts,
        writer: EndWriter,
        releases: Releases,
        leases: LeaseKeeper,
    ) -> None:
        self.runtime = runtime
        self._held = held
        self._logger = logger
        self._attempts = attempts
        self._writer = writer
        self._releases = releases
        self._leases = leases
        self.budget = PrefetchBudget(concurrency=1, ceiling=0)
        self._combine: CompleteAndClaim | None = None
        self._task: asyncio.Task[None] | None = None
        self.stopping = False
        # When known work becomes due (retries written here, delayed enqueues made here).
        self._due = DueTimes()
        self.anchor: Anchor | None = None  # the latest reading of the store's clock

    def start(self, budget: PrefetchBudget) -> None:
        self.stopping = False
        self.budget = budget
        self._combine = combined_call(self.runtime.storage)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="timecrisis-claim")

    def rides_completions(self) -> bool:
        """Whether the loop writes queued completions with its next claim (else the writer's
        flusher does)."""
        claiming = self._task is not None and not self._task.done()
        return self._combine is not None and not self.stopping and claiming

    async def end(self, budget: StopBudget) -> None:
        """Wait for the claim loop to notice the stop. A claim that does not answer within
        `GRACE` is cancelled; if it committed after all, its jobs come back when their
        leases expire."""
        self.stopping = True
        self._held.wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with budget.bounded(cap=GRACE):
                await asyncio.wait([task])
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=FLOOR)
        if not task.done():
            # It can no longer launch a job (it checks `stopping` after every claim and gives
            # what it got back), but a claim it commits late holds jobs until their leases
            # expire: say so, since that shows up as jobs "running" on a stopped worker.
            self._logger.warning(
                "the claim loop did not end within %.1fs of the stop; a claim it still "
                "commits is recovered when its leases expire",
                GRACE + FLOOR,
            )
        if task.done() and not task.cancelled():
            task.result()  # an unexpected error of the loop surfaces here, as before

    # ---- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        settings = self.runtime.settings
        backoff = ErrorBackoff()
        while not self.stopping:
            self._held.wake.clear()
            type_limits = self.runtime.type_limits()
            rate_limits = self.runtime.registry.rate_limits()
            key_limits = self.runtime.registry.key_limits()
            free = self._room(settings.max_concurrent_jobs, type_limits, bool(key_limits))
            # Without a free slot the loop waits for one (a freed slot wakes it), not a due time.
            idle = settings.job_processing_interval
            if free > 0 and type_limits:
                params = ClaimParams(
                    worker=self.runtime.worker,
                    limit=free,
                    lease_ttl=settings.job_lock_ttl,
                    type_limits=type_limits,
                    rate_limits=rate_limits,
                    key_limits=key_limits,
                    queues=settings.queues,
                )
                claims = await self._claim(params, backoff)
                if claims is None:
                    continue
                if self._stop_requested():  # stop() began while we claimed: give them back
                    await self._releases.release([self._register(c) for c in claims])
                    break
                for claimed in claims:
                    self._attempts.launch(self._register(claimed))
                if len(claims) == free:
                    continue  # a full batch: more may be waiting
                if rate_limits:
                    await self._note_rate_limit_free(rate_limits)
                idle = await self.idle_delay(idle)
            else:
                self._writer.flush_pending()  # no claim to ride on
            await wait_for_event(self._held.wake, idle)

    async def _claim(self, params: ClaimParams, backoff: ErrorBackoff) -> list[ClaimedJob] | None:
        """One claim, with the queued completions when the store combines them; None after a
        failure (backed off already)."""
        batch: Batch = self._writer.take_completions() if self._combine is not None else []
        claim_issued = time.monotonic()
        try:
            if batch:
                assert self._combine is not None
                results, claims = await self._combine([c for _, c in batch], params)
            else:
                claims = await self.runtime.storage.claim_jobs(params)
        except asyncio.CancelledError:
            # A stop gave up waiting for this call: its completions are still to write.
            self._writer.put_back(batch, flush=False)
            raise
        except Exception as exc:  # noqa: BLE001 - storage down: back off, keep the worker
            if batch:  # written alone from now on: a failing claim must not hold them
                self._writer.put_back(batch, flush=True)
            delay = backoff.next_delay()
            self._logger.warning(
                "claiming jobs failed (%s: %s); retrying in %.1fs",
                type(exc).__name__,
                exc,
                delay,
            )
            await wait_for_event(self._held.wake, delay)
            return None
        backoff.reset()
        self._due.claimed_at(claim_issued, self.anchor)
        if batch:
            self._writer.written(batch, results)
        return claims

    async def _note_rate_limit_free(self, rate_limits: dict[str, RateLimit]) -> None:
        """A short claim may have been held back by a full rate-limit window: learn when the
        first one frees, so the loop sleeps until then, not a whole processing interval, and
        does not poll in between (a due time costs one claim, then is forgotten)."""
        try:
            free_at = await self.runtime.storage.rate_limit_free_at(rate_limits)
        except Exception as exc:  # noqa: BLE001 - a hint only: the interval still finds the work
            self._logger.debug(
                "reading rate-limit windows failed (%s: %s)", type(exc).__name__, exc
            )
            return
        if free_at is not None:
            self._due.add_store_time(free_at)

    def _room(
        self, concurrency: int, type_limits: dict[str, int | None], keyed: bool = False
    ) -> int:
        """How many jobs to claim now: 0 to wait.

        `held` counts the claimed jobs whose handler has not ended (running or waiting for a
        slot). Without prefetch the room is the free slots. With it, the worker may hold
        `concurrency + allowance` jobs, and refills only by at least half of that, unless a slot
        is free and nothing waits: small claims would cost a round trip for a few jobs. Jobs
        awaiting the write of their end are bounded too (a store that accepts claims but
        refuses completions must not make the worker claim without end)."""
        jobs = len(self._held.jobs)
        held = jobs - self._held.settling
        capacity = concurrency + self._prefetch_allowance(type_limits, keyed)
        room = min(capacity - held, 2 * capacity - jobs)
        if held >= concurrency and room < capacity // 2:
            return 0
        return max(room, 0)

    def _prefetch_allowance(self, type_limits: dict[str, int | None], keyed: bool = False) -> int:
        if self.budget.ceiling <= 0:
            return 0
        if keyed or any(cap is not None and cap > 0 for cap in type_limits.values()):
            # A prefetched job of a limited type (or key) would hold one of the type's (key's)
            # cluster-wide slots while it waits here, and another worker could not use it.
            # A rate limit needs no such care: it counts claims, prefetched or not.
            return 0
        now = time.monotonic()
        oldest = max(
            (
                now - r.started
                for r in self._held.jobs.values()
                if r.started is not None and not r.settling
            ),
            default=0.0,
        )
        return self.budget.allowance(oldest)

    def _stop_requested(self) -> bool:
        # A method, not the attribute: it changes while we await, which type narrowing ignores.
        return self.stopping

    def _register(self, claimed: ClaimedJob) -> RunningJob:
        stale = self._held.jobs.get(claimed.job.id)
        if stale is not None:
            # The store handed out a job we still run: our lease on it ended (the reaper took
            # it back before our own renewals gave up), so that run must stop now.
            self._leases.mark_lost(stale)
        job_type = claimed.job.type
        registry = self.runtime.registry
        running = RunningJob(claimed, registry[job_type], registry.executor(job_type), JobState())
        self._held.add(running)
        return running

    # ---- known due times ---------------------------------------------------------------------

    def note_due_at(self, at: datetime) -> None:
        """Work becomes due at `at` (the store's clock): a retry this worker wrote, a `run_at`
        enqueued here. The claim loop wakes for it, not at its next interval."""
        self._due.add_store_time(at)
        self._held.wake.set()  # recompute the sleep

    def note_due_in(self, seconds: float) -> None:
        """Work becomes due `seconds` from now: a `delay` enqueued here. Counted from this
        call, after the store resolved the delay: never early."""
        self._due.add_local_deadline(time.monotonic() + seconds)
        self._held.wake.set()

    async def idle_delay(self, interval: float) -> float:
        """How long the claim loop sleeps after a claim that left slots free: until the
        earliest due time it knows, at most `interval` (which bounds the discovery of work
        enqueued elsewhere without a wake-up)."""
        if not self._due:
            return interval
        anchor = self.anchor
        stale = anchor is None or time.monotonic() - anchor.monotonic > _ANCHOR_MAX_AGE
        if self._due.has_store_times and stale:
            try:
                store_now = await self.runtime.storage.now()
            except Exception as exc:  # noqa: BLE001 - the claim will say if the store is down
                self._logger.debug(
                    "reading the store's clock failed (%s: %s)", type(exc).__name__, exc
                )
                return min(interval, 1.0)
            self.anchor = Anchor(store_now, time.monotonic())
        until = self._due.seconds_until_next(time.monotonic(), self.anchor)
        return interval if until is None else min(interval, until)
