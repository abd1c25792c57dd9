"""Builders and short-hands shared by the conformance tests. They only call the public
`JobStorage` protocol, so every backend is driven the same way."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from timecrisis.models import Job, JsonValue
from timecrisis.storage._common import new_id
from timecrisis.storage.base import (
    ClaimedJob,
    ClaimParams,
    Completion,
    FailOutcome,
    Failure,
    JobStorage,
    NewJob,
    ScheduleSpec,
)

START = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)  # where the `clock` fixture starts
EMAIL = "email"
REPORT = "report"
LEASE = timedelta(seconds=30)
BOOM = "RuntimeError: boom"


def new_job(job_type: str = EMAIL, **fields: Any) -> NewJob:
    fields.setdefault("data", {"n": 1})
    return NewJob(id=new_id(), type=job_type, **fields)


async def insert(storage: JobStorage, *jobs: NewJob) -> list[str]:
    """Insert jobs that must all be created; return their ids."""
    results = await storage.insert_jobs(list(jobs))
    assert [r.created for r in results] == [True] * len(jobs)
    return [r.id for r in results]


async def insert_one(storage: JobStorage, job_type: str = EMAIL, **fields: Any) -> str:
    [job_id] = await insert(storage, new_job(job_type, **fields))
    return job_id


async def get(storage: JobStorage, job_id: str) -> Job:
    job = await storage.get_job(job_id)
    assert job is not None, f"job {job_id} not found"
    return job


def claim_params(
    *,
    worker: str = "worker-1",
    limit: int = 10,
    lease_ttl: timedelta = LEASE,
    types: Mapping[str, int | None] | None = None,
    queues: Collection[str] | None = None,
) -> ClaimParams:
    type_limits = dict(types) if types is not None else {EMAIL: None, REPORT: None}
    return ClaimParams(
        worker=worker,
        limit=limit,
        lease_ttl=lease_ttl,
        type_limits=type_limits,
        queues=None if queues is None else frozenset(queues),
    )


async def claim(
    storage: JobStorage,
    *,
    worker: str = "worker-1",
    limit: int = 10,
    lease_ttl: timedelta = LEASE,
    types: Mapping[str, int | None] | None = None,
    queues: Collection[str] | None = None,
) -> list[ClaimedJob]:
    params = claim_params(
        worker=worker, limit=limit, lease_ttl=lease_ttl, types=types, queues=queues
    )
    return await storage.claim_jobs(params)


async def claim_one(
    storage: JobStorage,
    *,
    worker: str = "worker-1",
    lease_ttl: timedelta = LEASE,
    types: Mapping[str, int | None] | None = None,
) -> ClaimedJob:
    claimed = await claim(storage, worker=worker, limit=1, lease_ttl=lease_ttl, types=types)
    assert len(claimed) == 1, f"expected one claimable job, got {len(claimed)}"
    return claimed[0]


async def claimed_ids(storage: JobStorage, **kwargs: Any) -> list[str]:
    return [c.job.id for c in await claim(storage, **kwargs)]


async def complete(
    storage: JobStorage, claimed: ClaimedJob, result: JsonValue = None, *, canceled: bool = False
) -> datetime:
    [finished_at] = await storage.complete_jobs([Completion(claimed.ref, result, canceled)])
    assert finished_at is not None, "the completion was refused as stale"
    return finished_at


async def fail(
    storage: JobStorage, claimed: ClaimedJob, error: str = BOOM, *, retryable: bool = True
) -> FailOutcome:
    outcome = await storage.fail_job(Failure(claimed.ref, error, retryable))
    assert outcome is not None, "the failure was refused as stale"
    return outcome


def schedule_spec(name: str = "nightly", **fields: Any) -> ScheduleSpec:
    fields.setdefault("type", EMAIL)
    fields.setdefault("data", {"n": 1})
    fields.setdefault("schedule_type", "interval")
    fields.setdefault("schedule_value", "1h")
    fields.setdefault("time_zone", None)
    fields.setdefault("next_run_at", START + timedelta(hours=1))
    return ScheduleSpec(name=name, **fields)


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
