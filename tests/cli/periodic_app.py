"""An application that declares its schedules in code (`scheduler.periodic`), for the test
that `timecrisis worker tests.cli.periodic_app:scheduler` brings them along."""

from __future__ import annotations

from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler, SQLiteJobStorage


class Report(BaseModel):
    kind: str


scheduler = JobScheduler(
    SQLiteJobStorage("cli-periodic-default.db"),  # every test passes --storage
    worker="cli-periodic",
    job_processing_interval=0.1,
    job_scheduling_interval=0.2,
    worker_heartbeat_interval=0.2,
    leader_lock_ttl=1,
)


@scheduler.job("report", concurrency=None)
async def report(data: Report, ctx: JobContext) -> str:
    return data.kind


scheduler.periodic(
    "nightly-report",
    "report",
    Report(kind="nightly"),
    schedule_type="cron",
    schedule_value="0 3 * * *",
    time_zone="Europe/Paris",
)
scheduler.periodic(
    "often", "report", {"kind": "often"}, schedule_type="interval", schedule_value="200ms"
)
