"""A lived-in queue for the browser tests and the screenshots in docs/: an hour of traffic of
three job types (on a manual clock walked through the last hour), retries, dead letters, jobs
running with progress, workers, a leader and schedules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tests.dashboard.support import claim_one, new_job
from timecrisis.clock import ManualClock
from timecrisis.storage.base import (
    LEADER_LOCK,
    ClaimParams,
    Completion,
    Failure,
    JobStorage,
    NewLogEntry,
    ScheduleSpec,
)

WORKERS = ("web-1.prod-7f9c", "web-2.prod-7f9c", "batch-1.prod-42d1")
TYPES = {"send-email": None, "sync-crm": None, "build-report": None}


@dataclass(frozen=True, slots=True)
class Showcase:
    report: str  # a build-report job: failed once, running again with progress and logs
    dead: str  # a sync-crm job in the dead-letter queue


def start_of_hour_before(now: datetime) -> datetime:
    """Where `fill` starts the clock: an hour of traffic, then a minute for the rest."""
    return now - timedelta(minutes=61)


async def fill(storage: JobStorage, clock: ManualClock, now: datetime) -> Showcase:
    """`clock` must stand at `start_of_hour_before(now)`; it stands at `now` afterwards."""
    for minute in range(60):
        emails = 6 + round(5 * math.sin(minute / 7) + 3 * math.sin(minute / 3))
        jobs = [
            new_job("send-email", {"to": f"user{minute}-{i}@example.com", "template": "welcome"})
            for i in range(max(emails, 1))
        ]
        jobs += [new_job("sync-crm", {"account": 1000 + minute}, max_retries=0)]
        await storage.insert_jobs(jobs)
        claimed = await storage.claim_jobs(
            ClaimParams(
                worker=WORKERS[minute % 2],
                limit=len(jobs),
                lease_ttl=timedelta(minutes=5),
                type_limits={"send-email": None, "sync-crm": None},
            )
        )
        clock.advance(20 + minute % 7)
        failing = {c.job.id for c in claimed if c.job.type == "sync-crm" and minute % 9 == 4}
        await storage.complete_jobs(
            [Completion(c.ref, {"ok": True}) for c in claimed if c.job.id not in failing]
        )
        for c in claimed:
            if c.job.id in failing:
                await storage.fail_job(
                    Failure(c.ref, "HTTPError: 503 Service Unavailable from crm.example.com", False)
                )
        clock.set(start_of_hour_before(now) + timedelta(minutes=minute + 1))

    dead = new_job("sync-crm", {"account": 4242, "full": True})
    await storage.insert_jobs([dead])
    claimed_dead = await claim_one(storage, "sync-crm", worker=WORKERS[0])
    clock.advance(3)
    await storage.fail_job(Failure(claimed_dead.ref, "KeyError: 'owner_id'", False))

    report = new_job(
        "build-report",
        {"customer": "ACME Corp", "period": "2025-Q1", "pages": 40, "format": "pdf"},
        max_retries=3,
        entity_id="acme",
        backoff_strategy="linear",
        retry_delay=30,
    )
    await storage.insert_jobs([report])
    first = await claim_one(storage, "build-report", worker=WORKERS[2])
    await storage.append_logs(
        [NewLogEntry(report.id, first.run_id, "info", "rendering 40 pages for ACME Corp")]
    )
    clock.advance(12)
    await storage.append_logs(
        [NewLogEntry(report.id, first.run_id, "warn", "warehouse query slow: 9.8 s")]
    )
    await storage.fail_job(Failure(first.ref, "TimeoutError: warehouse query exceeded 10 s", True))
    clock.advance(31)
    second = await claim_one(storage, "build-report", worker=WORKERS[2])
    await storage.append_logs(
        [
            NewLogEntry(report.id, second.run_id, "info", "rendering 40 pages for ACME Corp"),
            NewLogEntry(
                report.id, second.run_id, "info", "page 26/40 done", {"page": 26, "ms": 412}
            ),
        ]
    )
    await storage.update_progress(second.ref, 65)

    for i, progress in enumerate((20, 85)):
        await storage.insert_jobs([new_job("send-email", {"to": f"batch{i}@example.com"})])
        running = await claim_one(storage, "send-email", worker=WORKERS[i])
        await storage.update_progress(running.ref, progress)
    await storage.insert_jobs(
        [new_job("send-email", {"to": f"later{i}@example.com"}, delay=timedelta(minutes=5))
         for i in range(12)]
    )  # fmt: skip

    await storage.upsert_schedule(
        ScheduleSpec(
            name="nightly-report",
            type="build-report",
            data={"customer": "all", "period": "daily"},
            schedule_type="cron",
            schedule_value="0 2 * * *",
            time_zone="Europe/Paris",
            next_run_at=_next_two_am_paris(now),
        )
    )
    await storage.upsert_schedule(
        ScheduleSpec(
            name="crm-sync",
            type="sync-crm",
            data={"account": "all"},
            schedule_type="interval",
            schedule_value="15m",
            time_zone=None,
            next_run_at=now + timedelta(minutes=7),
        )
    )
    clock.set(now)
    for name in WORKERS:  # each runs one of the three jobs claimed above
        await storage.heartbeat_worker(name, running=1, is_leader=name == WORKERS[0])
    assert await storage.acquire_lock(LEADER_LOCK, WORKERS[0], timedelta(seconds=30))
    return Showcase(report=report.id, dead=dead.id)


def _next_two_am_paris(now: datetime) -> datetime:
    from timecrisis.schedules import preview_schedule

    [first] = preview_schedule("cron", "0 2 * * *", time_zone="Europe/Paris", after=now, count=1)
    return first.astimezone(UTC)
