"""Pure decisions shared by every backend, so the three stores cannot drift apart.

Backends call these inside their atomic operation with values read in that same operation.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from timecrisis.models import BackoffStrategy, JsonValue
from timecrisis.retry import next_retry_at
from timecrisis.schedules import canonical_schedule_value
from timecrisis.storage.base import NewJob, ScheduleSpec


def new_id() -> str:
    """A fresh id for a job, run, schedule or lock token: a version 7 UUID (RFC 9562), 48 bits
    of Unix milliseconds then 74 random bits, in the usual 8-4-4-4-12 text form.

    Time-ordered on purpose: every index on an id column (jobs.id, job_runs.id, runs by job)
    then grows at its right edge, where random version 4 ids land on a random leaf each, so
    every write dirtied pages spread over the whole index, and the cost of a claim and a
    completion grew with the history kept in the store (W5 in docs/performance.md). 74 random
    bits keep ids and fencing tokens unguessable and unique."""
    value = (time.time_ns() // 1_000_000 & _MS_MASK) << 80 | int.from_bytes(os.urandom(10))
    return _uuid_text(value & _CLEAR_VERSION_AND_VARIANT | _VERSION_7 | _VARIANT_RFC)


def new_ids(count: int) -> list[str]:
    """`count` ids as `new_id` makes them, for a batch: one clock reading and one read of the
    random source for all of them (a system call per id was a fifth of the per-job cost of an
    `enqueue_many`). Ids made in the same millisecond are ordered by their random bits, as
    with `new_id`."""
    stamp = ((time.time_ns() // 1_000_000 & _MS_MASK) << 80) | _VERSION_7 | _VARIANT_RFC
    random = os.urandom(10 * count)
    return [
        _uuid_text(int.from_bytes(random[i : i + 10]) & _CLEAR_VERSION_AND_VARIANT | stamp)
        for i in range(0, 10 * count, 10)
    ]


def _uuid_text(value: int) -> str:
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_MS_MASK = (1 << 48) - 1
_CLEAR_VERSION_AND_VARIANT = ~((0xF << 76) | (0x3 << 62))
_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62


def canonical_json(value: JsonValue) -> str:
    """JSON text that is equal for equal values (keys sorted, no whitespace)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dump_json(value: JsonValue) -> str:
    """JSON text as stored. Strings stay strings: nothing date-like is ever revived on load."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def job_data_json(job: NewJob) -> str:
    """A new job's payload as the JSON text stores keep: the text the scheduler wrote when it
    checked the payload, else dumped here."""
    return job.data_json if job.data_json is not None else dump_json(job.data)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:  # stores only ever hold aware times; a naive one is a bug upstream
        raise ValueError(f"naive datetime reached the storage layer: {value!r}")
    return value.astimezone(UTC)


def resolve_run_at(job: NewJob, now: datetime) -> datetime:
    if job.delay is not None:
        return now + job.delay
    if job.run_at is not None:
        return to_utc(job.run_at)
    return now


def resolve_expires_at(job: NewJob, now: datetime) -> datetime | None:
    if job.expires_in is not None:  # expires_in wins over expires_at (DESIGN §1)
        return now + job.expires_in
    if job.expires_at is not None:
        return to_utc(job.expires_at)
    return None


def schedule_definition_changed(
    existing_type: str,
    existing_schedule_type: str,
    existing_value: str,
    existing_zone: str | None,
    existing_data_json: str,
    spec: ScheduleSpec,
) -> bool:
    """Whether re-registering `spec` changes when the schedule fires or what it runs (then
    `next_run_at` is reset). Values are compared by meaning (`'10m'` = `'600s'`); the job
    options are not compared (they are updated in place). `existing_data_json` may be any JSON
    text of the stored payload."""
    return (
        existing_type != spec.type
        or existing_schedule_type != spec.schedule_type
        or canonical_schedule_value(existing_schedule_type, existing_value)
        != canonical_schedule_value(spec.schedule_type, spec.schedule_value)
        or existing_zone != spec.time_zone
        or canonical_json(json.loads(existing_data_json)) != canonical_json(spec.data)
    )


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """What a failed attempt does to its job."""

    will_retry: bool
    run_at: datetime | None  # the next attempt's time when retrying
    fail_reason: str
    dead_lettered: bool
    finished_at: datetime | None
    canceled: bool = False  # the job ends `canceled` (cancel is final), not failed or pending


def decide_failure(
    *,
    now: datetime,
    error: str,
    retryable: bool,
    attempts: int,
    max_retries: int,
    backoff_strategy: BackoffStrategy,
    retry_delay: float,
    max_retry_delay: float,
    expires_at: datetime | None,
    cancel_requested: bool = False,
    retry_in: timedelta | None = None,
) -> FailureDecision:
    """The retry-or-dead-letter rule: `max_retries=N` allows N+1 attempts; an attempt that would
    start at or after `expires_at` is never scheduled. A job that `cancel_job` asked to stop is
    neither retried nor dead-lettered: it ends `canceled` (DESIGN §4, cancel is final).
    `retry_in` (a handler's `Retry(delay)`) replaces the backoff's wait, nothing else."""
    if cancel_requested:
        return FailureDecision(False, None, error, False, now, canceled=True)
    if retryable and attempts <= max_retries:
        if retry_in is not None:
            run_at = now + retry_in
        else:
            run_at = next_retry_at(now, backoff_strategy, attempts, retry_delay, max_retry_delay)
        if expires_at is None or run_at < expires_at:
            return FailureDecision(True, run_at, error, False, None)
        reason = f"{error} (not retried: the job expires at {expires_at.isoformat()})"
        return FailureDecision(False, None, reason, True, now)
    return FailureDecision(False, None, error, True, now)


def lease_expired_error(worker: str | None, lease_expires_at: datetime | None) -> str:
    """The run error recorded when the reaper takes a job back from a silent worker."""
    when = lease_expires_at.isoformat() if lease_expires_at else "unknown"
    return (
        f"LeaseExpiredError: the lease of worker {worker or '?'} expired at {when} "
        "(the worker died or lost contact with the store)"
    )


def expired_reason(expires_at: datetime) -> str:
    return f"JobExpiredError: the job expired at {expires_at.isoformat()} before it could start"


def average_seconds(total_us: int, count: int) -> float | None:
    """The average duration of `count` runs that took `total_us` microseconds in all. Every
    store sums whole microseconds and divides here, so their averages agree to the last digit
    (a sum of float seconds differs in the last bits from store to store)."""
    return None if count <= 0 else total_us / count / 1_000_000
