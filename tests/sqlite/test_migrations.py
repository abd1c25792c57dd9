"""Schema migrations of the SQLite store: fresh install, idempotence, concurrent init, refusing a
newer schema, and the CHECK constraints that must stay in step with the Python enums."""

from __future__ import annotations

import asyncio
import pathlib
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from tests.sqlite.conftest import StoreFactory
from tests.storage.factories import insert_one
from timecrisis.clock import ManualClock
from timecrisis.errors import StorageError
from timecrisis.models import FailureKind, JobStatus, QueueMetrics, RunStatus, TypeMetrics
from timecrisis.storage._run_stats import duration_bucket
from timecrisis.storage.base import RUN_DURATION_BUCKETS, ClaimParams
from timecrisis.storage.sqlite import SQLiteJobStorage
from timecrisis.storage.sqlite._migrate import available_migrations, latest_version


def _query(db: pathlib.Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _check_values(db: pathlib.Path, table: str, column: str) -> set[str]:
    """The values a `CHECK (column IN (...))` of `table` allows, read from the live schema."""
    [(create_sql,)] = _query(db, f"SELECT sql FROM sqlite_master WHERE name = '{table}'")
    assert isinstance(create_sql, str)
    match = re.search(rf"CHECK \({column} IN \(([^)]*)\)\)", create_sql)
    assert match is not None, f"no CHECK on {table}.{column}"
    return {value.strip().strip("'") for value in match[1].split(",")}


async def test_a_fresh_file_gets_every_migration_recorded(
    store: SQLiteJobStorage, db_path: pathlib.Path
) -> None:
    await store.init()

    recorded = _query(db_path, "SELECT version, name FROM timecrisis_migrations ORDER BY version")
    assert recorded == [(m.version, m.name) for m in available_migrations()]
    assert recorded[-1][0] == latest_version()
    tables = {row[0] for row in _query(db_path, "SELECT name FROM sqlite_master")}
    assert {"jobs", "job_runs", "job_logs", "scheduled_jobs", "workers", "locks"} <= tables


# Every migration recorded once (the count, not the version: versions need not be contiguous).
_APPLIED_ONCE = [(len(available_migrations()),)]


async def test_any_first_call_initialises_the_store(
    store: SQLiteJobStorage, db_path: pathlib.Path
) -> None:
    assert await store.get_job("nothing") is None  # no init() first

    assert _query(db_path, "SELECT count(*) FROM timecrisis_migrations") == _APPLIED_ONCE


async def test_init_is_idempotent_across_calls_and_handles(
    make_store: StoreFactory, db_path: pathlib.Path
) -> None:
    first = make_store()
    await first.init()
    job_id = await insert_one(first)
    await first.init()
    second = make_store()
    await second.init()

    assert _query(db_path, "SELECT count(*) FROM timecrisis_migrations") == _APPLIED_ONCE
    assert await second.get_job(job_id) is not None


async def test_many_tasks_on_many_handles_can_initialise_a_fresh_file_at_once(
    make_store: StoreFactory, db_path: pathlib.Path
) -> None:
    handles = [make_store() for _ in range(4)]

    await asyncio.gather(*(handle.init() for handle in handles for _ in range(3)))
    ids = await asyncio.gather(*(insert_one(handle) for handle in handles))

    assert _query(db_path, "SELECT count(*) FROM timecrisis_migrations") == _APPLIED_ONCE
    assert len(set(ids)) == 4


async def test_a_schema_newer_than_the_code_is_refused(
    make_store: StoreFactory, db_path: pathlib.Path
) -> None:
    await make_store().init()
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO timecrisis_migrations (version, name, applied_at) "
                "VALUES (?, 'from_the_future', 0)",
                (latest_version() + 1,),
            )
    finally:
        conn.close()
    newer = make_store()

    with pytest.raises(StorageError, match="newer"):
        await newer.init()
    with pytest.raises(StorageError, match="newer"):  # and every later call, not only the first
        await newer.get_job("any")


def test_the_status_check_allows_exactly_the_job_statuses(db_path: pathlib.Path) -> None:
    _apply_schema(db_path)

    assert _check_values(db_path, "jobs", "status") == {status.value for status in JobStatus}
    assert _check_values(db_path, "job_runs", "status") == {status.value for status in RunStatus}


def test_the_failure_kind_checks_allow_exactly_the_failure_kinds(db_path: pathlib.Path) -> None:
    _apply_schema(db_path)

    kinds = {kind.value for kind in FailureKind}
    assert _check_values(db_path, "jobs", "failure_kind") == kinds
    assert _check_values(db_path, "job_runs", "failure_kind") == kinds


def test_upgrading_to_failure_records_gives_old_failures_their_kind(db_path: pathlib.Path) -> None:
    """Version 2 adds `failure_kind`; the failures already recorded get the kind their text
    tells (what lease-loss metrics read from now on)."""
    [initial, failure_records, *_] = available_migrations()
    assert failure_records.name == "failure_records"
    conn = sqlite3.connect(db_path)
    try:
        conn.executescript(initial.sql)
        conn.executescript(
            "INSERT INTO jobs (id, type, data, status, priority, max_retries, backoff_strategy, "
            "retry_delay, max_retry_delay, run_at, created_at, fail_reason) VALUES "
            "('a', 't', '{}', 'failed', 1, 0, 'linear', 1, 1, 0, 0, 'LeaseExpiredError: x'), "
            "('b', 't', '{}', 'failed', 1, 0, 'linear', 1, 1, 0, 0, 'JobExpiredError: y'), "
            "('c', 't', '{}', 'completed', 1, 0, 'linear', 1, 1, 0, 0, NULL);"
            "INSERT INTO job_runs (id, job_id, job_type, attempt, status, worker, started_at, "
            "error) VALUES ('r1', 'a', 't', 1, 'failed', 'w', 0, 'LeaseExpiredError: x'), "
            "('r2', 'c', 't', 1, 'failed', 'w', 0, 'KeyError: k'), "
            "('r3', 'c', 't', 2, 'completed', 'w', 0, NULL);"
        )
        conn.executescript(failure_records.sql)
        jobs = conn.execute("SELECT id, failure_kind FROM jobs ORDER BY id").fetchall()
        runs = conn.execute("SELECT id, failure_kind FROM job_runs ORDER BY id").fetchall()
    finally:
        conn.close()

    assert jobs == [("a", "lease_expired"), ("b", "expired"), ("c", None)]
    assert runs == [("r1", "lease_expired"), ("r2", "error"), ("r3", None)]


def test_the_status_check_refuses_an_unknown_status(db_path: pathlib.Path) -> None:
    _apply_schema(db_path)
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(
                "INSERT INTO jobs (id, type, data, status, priority, max_retries, "
                "backoff_strategy, retry_delay, max_retry_delay, run_at, created_at) "
                "VALUES ('x', 't', '{}', 'paused', 1, 0, 'linear', 1, 1, 0, 0)"
            )
    finally:
        conn.close()


def _apply_schema(db_path: pathlib.Path) -> None:
    """The migrations as a plain script, outside the store."""
    conn = sqlite3.connect(db_path)
    try:
        for migration in available_migrations():
            conn.executescript(migration.sql)
    finally:
        conn.close()


async def test_schedules_and_workers_of_version_1_get_sensible_defaults(
    db_path: pathlib.Path,
) -> None:
    # A database written by version 1: a schedule without job options, a worker without its
    # own deadline. After the upgrade the schedule fires with the store defaults (as a leader
    # that did not know its type did) and the worker keeps the old 45 s deadline.
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    conn = sqlite3.connect(db_path)
    try:
        conn.executescript(available_migrations()[0].sql)
        conn.executescript(
            "CREATE TABLE timecrisis_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at INTEGER NOT NULL);"
            "INSERT INTO timecrisis_migrations VALUES (1, 'initial', 0);"
        )
        start_us = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        with conn:
            conn.execute(
                "INSERT INTO scheduled_jobs VALUES "
                "('s1', 'nightly', 'report', '{}', 'interval', '1h', NULL, 1, 1, ?, NULL, ?, ?)",
                (start_us, start_us, start_us),
            )
            conn.execute("INSERT INTO workers VALUES ('old', ?, ?, 0, 0)", (start_us, start_us))
    finally:
        conn.close()
    clock = ManualClock(start)
    store = SQLiteJobStorage(db_path, clock=clock)
    try:
        schedule = await store.get_schedule("nightly")
        assert schedule is not None
        assert (schedule.priority, schedule.max_retries, schedule.backoff_strategy) == (
            1,
            0,
            "exponential",
        )
        assert (schedule.retry_delay, schedule.max_retry_delay) == (10.0, 86400.0)
        [worker] = await store.list_workers()
        assert worker.expires_at is None
        clock.advance(45)
        assert await store.prune_workers() == []
        clock.advance(1)
        assert await store.prune_workers() == ["old"]
    finally:
        await store.close()


_EXISTING_JOBS = (
    "INSERT INTO jobs (id, type, data, status, priority, max_retries, backoff_strategy, "
    "retry_delay, max_retry_delay, run_at, created_at, dead_lettered, queue) VALUES "
    "('j1', 'email', '{}', 'completed', 1, 0, 'linear', 1, 1, 0, 0, 0, 'default'), "
    "('j2', 'email', '{}', 'completed', 1, 1, 'linear', 1, 1, 0, 0, 0, 'default'), "
    "('j3', 'email', '{}', 'failed', 1, 0, 'linear', 1, 1, 0, 0, 1, 'default'), "
    "('j4', 'email', '{}', 'pending', 1, 0, 'linear', 1, 1, 0, 0, 0, 'bulk'), "
    "('j5', 'report', '{}', 'running', 1, 0, 'linear', 1, 1, 0, 0, 0, 'default'), "
    "('j6', 'report', '{}', 'canceled', 1, 0, 'linear', 1, 1, 0, 0, 0, 'default');"
    "INSERT INTO job_runs (id, job_id, job_type, attempt, status, worker, started_at, "
    "duration, failure_kind) VALUES "
    "('r1', 'j1', 'email', 1, 'completed', 'w', 0, 0.003, NULL), "
    "('r2', 'j2', 'email', 1, 'failed', 'w', 0, 1.0, 'error'), "
    "('r3', 'j2', 'email', 2, 'completed', 'w', 0, 2.0, NULL), "
    "('r4', 'j3', 'email', 1, 'failed', 'w', 0, 7200.0, 'lease_expired'), "
    "('r5', 'j5', 'report', 1, 'running', 'w', 0, NULL, NULL);"
)


def _file_at_version(db_path: pathlib.Path, version: int, script: str = "") -> None:
    """A file migrated by hand to `version` (as an older release left it), then `script`."""
    conn = sqlite3.connect(db_path)
    try:
        conn.executescript(
            "CREATE TABLE timecrisis_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at INTEGER NOT NULL);"
        )
        for migration in available_migrations():
            if migration.version <= version:
                conn.executescript(migration.sql)
                conn.execute(
                    "INSERT INTO timecrisis_migrations VALUES (?, ?, 0)",
                    (migration.version, migration.name),
                )
        conn.executescript(script)
        conn.commit()
    finally:
        conn.close()


async def test_the_counters_are_backfilled_from_the_jobs_and_runs_of_an_existing_file(
    db_path: pathlib.Path,
) -> None:
    """Version 9 keeps the counts the metrics read; a file with jobs gets them counted once,
    then the writes keep them as the jobs change."""
    _file_at_version(db_path, 7, _EXISTING_JOBS)
    store = SQLiteJobStorage(db_path)
    try:
        metrics = await store.get_metrics()  # the first call migrates
        stats = {(s.type, s.status): s for s in await store.get_run_stats()}

        assert [t.model_dump() for t in metrics.types.values()] == [
            TypeMetrics(
                completed=2, failed=1, pending=1, dead_letter=1, average_duration=1.0015
            ).model_dump(),
            TypeMetrics(running=1, canceled=1).model_dump(),
        ]
        assert list(metrics.types) == ["email", "report"]
        assert metrics.queues == {
            "bulk": QueueMetrics(pending=1),
            "default": QueueMetrics(running=1),
        }
        failed = stats["email", RunStatus.FAILED]
        assert (failed.runs, failed.lease_losses, failed.duration_buckets[7]) == (2, 1, 1)
        assert failed.duration_count == 2 and failed.duration_buckets[-1] == 1  # 7200 s: +Inf
        completed = stats["email", RunStatus.COMPLETED]
        assert (completed.runs, completed.retries, completed.duration_buckets[0]) == (2, 1, 1)
        assert stats["report", RunStatus.RUNNING].duration_count == 0
        assert _query(db_path, "SELECT * FROM job_counts WHERE n > 0") == _query(
            db_path,
            "SELECT type, queue, status, dead_lettered, count(*) FROM jobs "
            "GROUP BY type, queue, status, dead_lettered ORDER BY 1, 2, 3, 4",
        )

        assert await store.retry_job("j3")
        after = await store.get_metrics()
        assert (after.types["email"].failed, after.types["email"].pending) == (0, 2)
        assert after.dead_letter == 0
    finally:
        await store.close()


def test_the_backfill_buckets_durations_as_the_store_does(db_path: pathlib.Path) -> None:
    """The backfill's CASE (migration 9 writes the bounds out) against `duration_bucket`, at
    every bound and on either side of it."""
    [migration] = [m for m in available_migrations() if m.version == 9]
    match = re.search(r"CASE WHEN duration IS NULL THEN -1.*?END", migration.sql, re.S)
    assert match is not None
    durations = [d for bound in RUN_DURATION_BUCKETS for d in (bound * 0.999, bound, bound * 1.001)]
    conn = sqlite3.connect(":memory:")
    try:
        buckets = [
            conn.execute(f"SELECT {match[0]} FROM (SELECT ? AS duration)", (d,)).fetchone()[0]
            for d in [None, *durations]
        ]
    finally:
        conn.close()

    assert buckets == [-1, *(duration_bucket(d) for d in durations)]


async def test_pending_jobs_of_an_existing_file_are_claimed_when_due_after_version_11(
    db_path: pathlib.Path,
) -> None:
    """Version 11 keeps delayed jobs out of the queue indexes: the pending jobs a file holds
    are marked waiting when their run_at is after their creation, and every one of them is
    claimed when due, in claim order, not before."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    at = int(start.timestamp() * 1_000_000)
    minute = 60_000_000
    _file_at_version(
        db_path,
        9,
        "INSERT INTO jobs (id, type, data, status, priority, max_retries, backoff_strategy, "
        "retry_delay, max_retry_delay, run_at, created_at, queue) VALUES "
        f"('due', 'email', '{{}}', 'pending', 0, 0, 'linear', 1, 1, {at}, {at}, 'default'), "
        f"('soon', 'email', '{{}}', 'pending', 5, 0, 'linear', 1, 1, {at + minute}, {at}, "
        "'default'), "
        f"('later', 'email', '{{}}', 'pending', 0, 0, 'linear', 1, 1, {at + 2 * minute}, "
        f"{at}, 'default'), "
        f"('past', 'email', '{{}}', 'pending', 0, 0, 'linear', 1, 1, {at - minute}, "
        f"{at - 2 * minute}, 'default');",
    )
    clock = ManualClock(start)
    store = SQLiteJobStorage(db_path, clock=clock)
    params = ClaimParams(
        worker="w", limit=10, lease_ttl=timedelta(minutes=5), type_limits={"email": None}
    )
    try:
        assert [c.job.id for c in await store.claim_jobs(params)] == ["due", "past"]
        assert _query(db_path, "SELECT id, waiting FROM jobs WHERE status = 'pending'") == [
            ("soon", 1),
            ("later", 1),
        ]
        clock.advance(2 * 60)
        assert [c.job.id for c in await store.claim_jobs(params)] == ["soon", "later"]
    finally:
        await store.close()
