"""Schema migrations of the SQLite store: fresh install, idempotence, concurrent init, refusing a
newer schema, and the CHECK constraints that must stay in step with the Python enums."""

from __future__ import annotations

import asyncio
import pathlib
import re
import sqlite3

import pytest

from tests.sqlite.conftest import StoreFactory
from tests.storage.factories import insert_one
from timecrisis.errors import StorageError
from timecrisis.models import JobStatus, RunStatus
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
