"""Helpers for the CLI tests: run the real command in a subprocess, and fill a store through the
public API so the commands have something to show."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from tests.cli import app
from timecrisis import JobScheduler, JobStorage, storage_from_url

REPO = pathlib.Path(__file__).resolve().parents[2]
# Fast loops, so the filling scheduler works its jobs off in a fraction of a second.
FAST: dict[str, Any] = {
    "job_processing_interval": 0.05,
    "job_scheduling_interval": 0.05,
    "worker_heartbeat_interval": 0.25,
    "leader_lock_ttl": 0.6,
    "shutdown_timeout": 2,
}


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMECRISIS_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    """`python -m timecrisis.cli ARGS`: the same entry point as the installed script."""
    return [sys.executable, "-m", "timecrisis.cli", *args]


def run_cli(*args: str, timeout: float = 60, **env: str) -> Result:
    done = subprocess.run(
        command(*args),
        cwd=REPO,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    """The CLI's failure promise: the exit code, nothing on stdout, one line on stderr."""
    assert result.code == code, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == ""


@dataclass(frozen=True, slots=True)
class Filled:
    """What `fill` put into the store."""

    url: str
    completed: list[str]  # two greet jobs; the first has entity "customer-7"
    failed: str  # a boom job, dead-lettered
    pending: str  # a greet job delayed by an hour
    canceled: str
    worker: str  # a registered worker (leader; its heartbeat claims 2 running jobs, it runs none)


def scheduler_on(storage: JobStorage) -> JobScheduler:
    """A scheduler with the test application's job definitions, on another store."""
    scheduler = JobScheduler(storage, worker="filler", **FAST)
    for definition in app.scheduler.job_definitions.values():
        scheduler.register_job(definition)
    return scheduler


def fill(url: str) -> Filled:
    return asyncio.run(_fill(url))


async def _fill(url: str) -> Filled:
    scheduler = scheduler_on(storage_from_url(url))
    try:
        first = await scheduler.enqueue("greet", {"name": "ada"}, entity_id="customer-7")
        second = await scheduler.enqueue("greet", {"name": "grace"})
        failed = await scheduler.enqueue("boom", {})
        async with scheduler:
            for job_id in (first, second, failed):
                await scheduler.wait_for_job(job_id, timeout=20)
        pending = await scheduler.enqueue("greet", {"name": "later"}, delay="1h")
        canceled = await scheduler.enqueue("greet", {"name": "never"}, delay="1h")
        assert await scheduler.cancel_job(canceled)
        await scheduler.schedule(
            "nightly",
            "greet",
            {"name": "night"},
            schedule_type="cron",
            schedule_value="30 2 * * *",
            time_zone="Europe/Paris",
        )
        await scheduler.schedule(
            "every-5m", "greet", {"name": "tick"}, schedule_type="interval", schedule_value="5m"
        )
        await scheduler.storage.heartbeat_worker("ops-worker-1", running=2, is_leader=True)
    finally:
        await scheduler.close()
    return Filled(url, [first, second], failed, pending, canceled, "ops-worker-1")
