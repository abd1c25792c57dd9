"""A small, known queue for the dashboard tests, built through the storage API (no worker
loops, so every state is exact), and the client that talks to the app in-process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from starlette.types import ASGIApp

from timecrisis.clock import ManualClock
from timecrisis.models import FailureKind
from timecrisis.storage.base import (
    LEADER_LOCK,
    ClaimedJob,
    ClaimParams,
    Completion,
    Failure,
    JobStorage,
    NewJob,
    NewLogEntry,
    ScheduleSpec,
)

START = datetime(2025, 3, 3, 9, 0, 30, tzinfo=UTC)  # the stores' clock in the route tests
ORIGIN = "http://dashboard.test"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


@dataclass(frozen=True, slots=True)
class Seeded:
    completed: str
    dead: str
    running: str
    pending_xss: str
    pending: list[str]  # oldest first
    running_claim: ClaimedJob


def new_job(job_type: str, data: object, **fields: object) -> NewJob:
    return NewJob(id=str(uuid.uuid4()), type=job_type, data=data, **fields)  # type: ignore[arg-type]


async def claim_one(storage: JobStorage, job_type: str, worker: str = "worker-1") -> ClaimedJob:
    [claimed] = await storage.claim_jobs(
        ClaimParams(
            worker=worker, limit=1, lease_ttl=timedelta(hours=1), type_limits={job_type: None}
        )
    )
    return claimed


SMTP_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/mail.py", line 9, in send_email\n'
    "    raise RuntimeError('<b>SMTP down</b>')\n"
    "RuntimeError: <b>SMTP down</b>\n"
)


async def seed(storage: JobStorage, clock: ManualClock) -> Seeded:
    """email: one completed (2 s, with logs and a result), one dead letter; report: one running
    at 40 %; email: a pending job whose payload holds a script, and three plain pending ones.
    Two workers, worker-1 leads. Two schedules, one disabled."""
    done = new_job("email", {"to": "a@example.com", "subject": "Hi"}, entity_id="customer-7")
    await storage.insert_jobs([done])
    claimed = await claim_one(storage, "email")
    await storage.append_logs(
        [NewLogEntry(done.id, claimed.run_id, "info", "sending to <b>a@example.com</b>")]
    )
    clock.advance(2)
    await storage.complete_jobs([Completion(claimed.ref, {"sent": True})])

    dead = new_job("email", {"to": "b@example.com", "subject": "Yo"})
    await storage.insert_jobs([dead])
    claimed = await claim_one(storage, "email")
    clock.advance(1)
    await storage.fail_job(
        Failure(
            claimed.ref,
            "RuntimeError: <b>SMTP down</b>",
            False,
            kind=FailureKind.NON_RETRYABLE,
            traceback=SMTP_TRACEBACK,
        )
    )

    running = new_job("report", {"pages": 10})
    await storage.insert_jobs([running])
    running_claim = await claim_one(storage, "report", worker="worker-2")
    await storage.update_progress(running_claim.ref, 40)

    xss = new_job("email", {"to": "c@example.com", "subject": XSS}, entity_id="customer-7")
    plain = [new_job("email", {"to": f"p{i}@example.com", "subject": "x"}) for i in range(3)]
    await storage.insert_jobs([xss, *plain])

    await storage.upsert_schedule(
        ScheduleSpec(
            name="nightly-report",
            type="report",
            data={"pages": 3},
            schedule_type="cron",
            schedule_value="30 2 * * *",
            time_zone="Europe/Paris",
            next_run_at=datetime(2025, 3, 4, 1, 30, tzinfo=UTC),
        )
    )
    await storage.upsert_schedule(
        ScheduleSpec(
            name="heartbeat",
            type="email",
            data={"to": "ops@example.com", "subject": "beat"},
            schedule_type="interval",
            schedule_value="5m",
            time_zone=None,
            next_run_at=START + timedelta(minutes=5),
            enabled=False,
        )
    )
    await storage.heartbeat_worker("worker-1", running=0, is_leader=True)
    await storage.heartbeat_worker("worker-2", running=1, is_leader=False)
    assert await storage.acquire_lock(LEADER_LOCK, "worker-1", timedelta(minutes=1))
    return Seeded(
        completed=done.id,
        dead=dead.id,
        running=running.id,
        pending_xss=xss.id,
        pending=[job.id for job in plain],
        running_claim=running_claim,
    )


def client(app: ASGIApp) -> httpx.AsyncClient:
    """In-process HTTP to the app. Browser-like headers (the same origin) are added by the
    tests that need them."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN)
