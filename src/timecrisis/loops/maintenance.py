"""The leader's chores, one step function each: fire due schedules, expire jobs, take jobs back
from dead workers, prune old history. Each step returns how long to sleep before the next one.

Followers run the same loops but do nothing, so a new leader starts working at its next tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

from timecrisis._logging import child
from timecrisis.errors import InvalidScheduleError, JobExpiredError, LeaseExpiredError
from timecrisis.loops.runtime import Runtime
from timecrisis.models import JobStatus, ScheduledJob
from timecrisis.schedules import parse_schedule, plan_tick
from timecrisis.storage._common import new_id
from timecrisis.storage.base import NewJob, PurgeParams, ScheduleAdvance

_BATCH = 100
# The schedule loop never sleeps less than this, even when a tick is due "now": a floor against
# spinning when clocks disagree by a few milliseconds.
_MIN_SLEEP = 0.01


def sleep_until_tick(
    next_ticks: Iterable[datetime | None], now: datetime, elapsed: float, interval: float
) -> float:
    """Seconds the schedule loop sleeps: until the earliest of `next_ticks` (store times; `now`
    is the store's clock when they were read, `elapsed` the local seconds since), never more
    than `interval` (which bounds the discovery of schedules changed on other nodes), never
    less than `_MIN_SLEEP`."""
    known = [tick for tick in next_ticks if tick is not None]
    if not known:
        return interval
    until = (min(known) - now).total_seconds() - elapsed
    return max(_MIN_SLEEP, min(interval, until))


def _still_leading(runtime: Runtime) -> bool:
    # A function, not the attribute: it changes while we await, which type narrowing ignores.
    return runtime.is_leader


class ScheduleFiring:
    def __init__(self, runtime: Runtime, on_jobs_created: Callable[[], None]) -> None:
        self._runtime = runtime
        self._on_jobs_created = on_jobs_created
        self._logger = child(runtime.logger, "schedules")

    async def step(self) -> float | None:
        runtime = self._runtime
        interval = runtime.settings.job_scheduling_interval
        if not runtime.is_leader:
            return None
        due = await runtime.storage.get_due_schedules(_BATCH)
        read_at = time.monotonic()
        created = 0
        # The next ticks this pass knows: those of the schedules not due yet, and those it
        # computes for the schedules it fires (not in `due.next_due_at`, read before firing).
        next_ticks = [due.next_due_at]
        for schedule in due.schedules:
            if not _still_leading(runtime):  # deposed mid-batch: stop acting as leader now
                return None
            fired, next_run_at = await self._fire(schedule, due.now)
            created += fired
            next_ticks.append(next_run_at)
        if created:
            self._on_jobs_created()
        if len(due.schedules) == _BATCH:
            return 0.0
        return sleep_until_tick(next_ticks, due.now, time.monotonic() - read_at, interval)

    async def _fire(self, schedule: ScheduledJob, now: datetime) -> tuple[bool, datetime | None]:
        """Fire (or skip) the due tick of `schedule`. Returns whether a job was created, and
        the schedule's next tick (None when it has none)."""
        runtime = self._runtime
        assert schedule.next_run_at is not None
        try:
            parsed = parse_schedule(
                schedule.schedule_type, schedule.schedule_value, schedule.time_zone
            )
        except InvalidScheduleError as exc:
            self._logger.error("disabling schedule %r: %s", schedule.name, exc)
            await runtime.storage.advance_schedule(
                ScheduleAdvance(schedule.id, schedule.next_run_at, None, disable=True)
            )
            return False, None
        plan = plan_tick(
            parsed, schedule.next_run_at, now, runtime.settings.scheduled_job_max_stale_age
        )
        job = None
        if plan.fire_at is not None:
            job = self._job_for(schedule, plan.fire_at)
        else:
            self._logger.warning(
                "schedule %r skipped ticks older than %s (due %s)",
                schedule.name,
                runtime.settings.scheduled_job_max_stale_age,
                schedule.next_run_at.isoformat(),
            )
        result = await runtime.storage.advance_schedule(
            ScheduleAdvance(
                schedule_id=schedule.id,
                expected_next_run_at=schedule.next_run_at,
                next_run_at=plan.next_run_at,
                disable=plan.disable,
                job=job,
                allow_overlap=schedule.allow_overlap,
            )
        )
        if result.skipped_overlap:
            self._logger.info(
                "schedule %r: tick skipped, its previous job is still pending or running",
                schedule.name,
            )
        if result.job_id is not None:
            self._logger.debug("schedule %r fired job %s", schedule.name, result.job_id)
        # Lost compare-and-set: another node moved the schedule; our tick is at worst an
        # early look, and that pass reads the stored one.
        return result.job_id is not None, plan.next_run_at

    def _job_for(self, schedule: ScheduledJob, fire_at: datetime) -> NewJob:
        # The options stored with the schedule by the node that registered it, never this
        # leader's registry: the leader may not know the type, or run an older definition
        # (DESIGN §4, "cluster decisions never depend on the leader's local configuration").
        return NewJob(
            id=new_id(),
            type=schedule.type,
            data=schedule.data,
            priority=schedule.priority,
            max_retries=schedule.max_retries,
            backoff_strategy=schedule.backoff_strategy,
            retry_delay=schedule.retry_delay,
            max_retry_delay=schedule.max_retry_delay,
            scheduled_job_id=schedule.id,
            schedule_fire_at=fire_at,
            queue=schedule.queue,
        )


class ExpiryStep:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._logger = child(runtime.logger, "expiry")

    async def step(self) -> float | None:
        runtime = self._runtime
        if not runtime.is_leader:
            return None
        expired = await runtime.storage.expire_jobs(_BATCH)
        for job in expired:
            # Failed for good: an expired job is never retried, so this is a dead letter.
            self._logger.error(
                "job %s (%s) expired before it could run; dead-lettered (%s)",
                job.id,
                job.type,
                job.fail_reason,
            )
            await runtime.job_failed(self._logger, job, JobExpiredError(job.fail_reason))
        return 0.0 if len(expired) == _BATCH else None


class ReaperStep:
    """Takes jobs back from workers that died: prunes silent workers (ending their leases) and
    fails the attempts whose lease expired, which retries them or dead-letters them."""

    def __init__(
        self,
        runtime: Runtime,
        on_jobs_requeued: Callable[[], None],
        on_retry_due: Callable[[datetime], None] | None = None,
    ) -> None:
        self._runtime = runtime
        self._on_jobs_requeued = on_jobs_requeued
        self._on_retry_due = on_retry_due  # this node's worker wakes at each retry's run_at
        self._logger = child(runtime.logger, "reaper")

    async def step(self) -> float | None:
        runtime = self._runtime
        if not runtime.is_leader:
            return None
        removed = await runtime.storage.prune_workers()  # each worker's own deadline decides
        for name in removed:
            self._logger.warning("worker %s stopped sending heartbeats; removed it", name)
        outcomes = await runtime.storage.recover_expired_leases(_BATCH)
        for outcome in outcomes:
            job = outcome.job
            canceled = job.status is JobStatus.CANCELED  # cancel_job had asked it to stop
            if outcome.will_retry:
                self._logger.warning(
                    "took job %s (%s) back after its lease expired (%s); retrying at %s",
                    job.id,
                    job.type,
                    outcome.error,
                    job.run_at.isoformat(),
                )
            elif canceled:
                self._logger.warning(
                    "took job %s (%s) back after its lease expired (%s); it was asked to "
                    "stop: canceled, not retried",
                    job.id,
                    job.type,
                    outcome.error,
                )
            else:
                self._logger.error(
                    "took job %s (%s) back after its lease expired (%s); it failed for good: "
                    "dead-lettered (%s)",
                    job.id,
                    job.type,
                    outcome.error,
                    job.fail_reason,
                )
            await runtime.job_failed(self._logger, job, LeaseExpiredError(outcome.error))
        if any(o.will_retry for o in outcomes):
            if self._on_retry_due is not None:
                for outcome in outcomes:
                    if outcome.will_retry:
                        self._on_retry_due(outcome.job.run_at)
            self._on_jobs_requeued()
        return 0.0 if len(outcomes) == _BATCH else None


class RetentionStep:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._logger = child(runtime.logger, "retention")

    @property
    def interval(self) -> float:
        # Hourly, or more often for a retention shorter than an hour.
        retention = self._runtime.settings.job_retention
        return max(1.0, min(3600.0, retention.total_seconds()))

    async def step(self) -> float | None:
        runtime = self._runtime
        if not runtime.is_leader:
            return None
        deleted = await runtime.storage.purge_jobs(
            PurgeParams(older_than=runtime.settings.job_retention, limit=1000)
        )
        if deleted:
            self._logger.info(
                "pruned %d finished job(s) older than %s", deleted, runtime.settings.job_retention
            )
        return 0.0 if deleted == 1000 else None


def reaper_interval(runtime: Runtime) -> float:
    """Often enough that a dead worker's jobs come back soon after their lease expires."""
    settings = runtime.settings
    half_ttl = settings.job_lock_ttl / 2
    return min(settings.worker_inactive_check_interval, half_ttl.total_seconds())
