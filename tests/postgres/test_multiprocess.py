"""Worker processes sharing one PostgreSQL database (chaos tests).

- Four workers work off 5,000 jobs; one is SIGKILLed half-way. Every job completes, and no job
  has two completed runs (a killed worker's jobs fail their attempt on lease expiry and run
  again elsewhere; the fencing token refuses any late completion).
- The leader is SIGKILLed; another process takes the leadership over once the lease lapses.

Waits poll the database for an outcome, with generous limits; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.postgres import pg_worker_app
from tests.postgres.conftest import Admin, terminate_backends
from timecrisis import JobScheduler, PostgresJobStorage
from timecrisis.storage.base import LEADER_LOCK

pytestmark = [pytest.mark.postgres, pytest.mark.chaos]

ROOT = pathlib.Path(__file__).resolve().parents[2]
JOBS = 5000
GUARD_SECONDS = 120


class Workers:
    """Worker processes, killed at teardown whatever happens."""

    def __init__(self, url: str, schema: str, logs: pathlib.Path) -> None:
        self._url, self._schema, self._logs = url, schema, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "TC_PG_URL": self._url, "TC_PG_SCHEMA": self._schema}
        env["TC_WORKER"] = name
        # stderr to a file, not a pipe: a killed child must not leave a pipe behind.
        with (self._logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.postgres.pg_worker_app"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(pg_url: str, schema: str, tmp_path: pathlib.Path) -> Iterator[Workers]:
    group = Workers(pg_url, schema, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
async def producer(pg_url: str, schema: str) -> AsyncIterator[JobScheduler]:
    scheduler = JobScheduler(PostgresJobStorage(pg_url, schema=schema), worker="producer")
    for definition in pg_worker_app.scheduler.job_definitions.values():
        scheduler.register_job(definition)
    try:
        yield scheduler
    finally:
        await scheduler.close()


async def _value(admin: Admin, schema: str, query: str, *args: Any) -> Any:
    cur = await admin.execute(sql.SQL(query).format(sql.Identifier(schema)), args)
    row = await cur.fetchone()
    return None if row is None else row[0]


async def _until(check: Callable[[], Any], what: str) -> None:
    async with asyncio.timeout(GUARD_SECONDS):
        while not await check():
            await asyncio.sleep(0.05)


async def test_a_worker_killed_half_way_through_5000_jobs_loses_none_and_doubles_none(
    workers: Workers, producer: JobScheduler, admin: Admin, schema: str
) -> None:
    for start in range(0, JOBS, 1000):
        await producer.enqueue_many("item", [{"n": n} for n in range(start, start + 1000)])
    for index in range(4):
        workers.spawn(f"worker-{index}")

    async def half_done() -> bool:
        done = await _value(
            admin, schema, "SELECT count(*) FROM {}.jobs WHERE status = 'completed'"
        )
        return bool(done >= JOBS // 2)

    async def victim_busy() -> bool:
        running = await _value(
            admin,
            schema,
            "SELECT count(*) FROM {}.jobs WHERE status = 'running' AND worker = 'worker-0'",
        )
        return bool(running > 0)

    await _until(half_done, "half of the jobs completed")
    await _until(victim_busy, "worker-0 is running jobs")  # so the kill lands mid-job
    workers.kill("worker-0")
    killed_at = time.monotonic()
    # Jobs still marked running on worker-0 just after the kill: the ones it took down with it.
    orphans = await _value(
        admin,
        schema,
        "SELECT coalesce(array_agg(id), '{{}}') FROM {}.jobs "
        "WHERE status = 'running' AND worker = 'worker-0'",
    )

    async def orphans_done() -> bool:
        left = await _value(
            admin,
            schema,
            "SELECT count(*) FROM {}.jobs WHERE id = ANY(%s) AND status <> 'completed'",
            orphans,
        )
        return bool(left == 0)

    await _until(orphans_done, "the killed worker's jobs completed elsewhere")
    recovered_after = time.monotonic() - killed_at

    async def all_done() -> bool:
        done = await _value(
            admin, schema, "SELECT count(*) FROM {}.jobs WHERE status = 'completed'"
        )
        return bool(done == JOBS)

    await _until(all_done, "every job completed")

    doubled = await _value(
        admin,
        schema,
        "SELECT count(*) FROM (SELECT job_id FROM {}.job_runs WHERE status = 'completed' "
        "GROUP BY job_id HAVING count(*) > 1) AS d",
    )
    completed_runs = await _value(
        admin, schema, "SELECT count(*) FROM {}.job_runs WHERE status = 'completed'"
    )
    left_running = await _value(
        admin, schema, "SELECT count(*) FROM {}.job_runs WHERE status = 'running'"
    )
    assert doubled == 0
    assert completed_runs == JOBS
    assert left_running == 0  # the killed worker's runs were failed by the reaper
    results_ok = await _value(
        admin, schema, "SELECT count(*) FROM {}.jobs WHERE result::text::int = (data->>'n')::int"
    )
    assert results_ok == JOBS
    # Figures for the record (`pytest -s`), not assertions: the lease TTL bounds the recovery.
    print(
        f"\n[chaos] {JOBS} jobs, 4 processes, 1 SIGKILL with {len(orphans)} jobs in flight: "
        f"completed {completed_runs}, duplicates {doubled}, lost {JOBS - results_ok}; "
        f"orphans completed elsewhere {recovered_after:.2f} s after the kill "
        f"(job_lock_ttl {pg_worker_app.JOB_LOCK_TTL} s)"
    )


async def test_workers_whose_connections_are_killed_carry_on(
    pg_url: str, schema: str, tmp_path: pathlib.Path, producer: JobScheduler, admin: Admin
) -> None:
    # Workers tagged with an application_name of this test only, so the kill spares every
    # other connection on the server.
    application = f"tc-{schema}"
    group = Workers(make_conninfo(pg_url, application_name=application), schema, tmp_path)
    try:
        for start in range(0, 2000, 1000):
            await producer.enqueue_many("item", [{"n": n} for n in range(start, start + 1000)])
        group.spawn("worker-a")
        group.spawn("worker-b")

        async def completed_at_least(count: int) -> bool:
            done = await _value(
                admin, schema, "SELECT count(*) FROM {}.jobs WHERE status = 'completed'"
            )
            return bool(done >= count)

        for milestone in (300, 800, 1300):
            await _until(functools.partial(completed_at_least, milestone), "a milestone")
            killed = await terminate_backends(admin, application)
            assert killed > 0
        await _until(functools.partial(completed_at_least, 2000), "every job completed")
    finally:
        group.stop_all()

    doubled = await _value(
        admin,
        schema,
        "SELECT count(*) FROM (SELECT job_id FROM {}.job_runs WHERE status = 'completed' "
        "GROUP BY job_id HAVING count(*) > 1) AS d",
    )
    assert doubled == 0
    assert all(proc.returncode == -signal.SIGKILL for proc in group.procs.values())


async def test_a_killed_leader_is_replaced_by_another_process(
    workers: Workers, producer: JobScheduler, admin: Admin, schema: str
) -> None:
    await producer.storage.init()  # the tables exist before the test looks for a leader

    async def leader() -> str | None:
        owner: str | None = await _value(
            admin,
            schema,
            "SELECT owner FROM {}.locks WHERE name = %s AND expires_at > now()",
            LEADER_LOCK,
        )
        return owner

    workers.spawn("node-a")
    workers.spawn("node-b")

    async def elected() -> bool:
        return await leader() in ("node-a", "node-b")

    await _until(elected, "a leader was elected")
    first = await leader()
    assert first is not None
    workers.kill(first)
    killed_at = time.monotonic()
    survivor = "node-b" if first == "node-a" else "node-a"

    async def taken_over() -> bool:
        return await leader() == survivor

    await _until(taken_over, "the survivor took the leadership over")
    print(
        f"\n[failover] {survivor} led {time.monotonic() - killed_at:.2f} s after the leader "
        f"was killed (leader_lock_ttl {pg_worker_app.LEADER_LOCK_TTL} s)"
    )
