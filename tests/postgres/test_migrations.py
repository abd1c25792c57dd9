"""Migrations on PostgreSQL: nodes booting together migrate exactly once, a newer schema is
refused, a fresh install equals an upgrade, and the schema's enums match the Python ones."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.postgres.conftest import Admin, StoreFactory
from timecrisis.clock import ManualClock
from timecrisis.errors import StorageError
from timecrisis.models import FailureKind, JobStatus, QueueMetrics, RunStatus, TypeMetrics
from timecrisis.storage._run_stats import duration_bucket
from timecrisis.storage.base import (
    RUN_DURATION_BUCKETS,
    ClaimParams,
    Completion,
    JobQuery,
    NewJob,
    RunStats,
)
from timecrisis.storage.postgres import PostgresJobStorage
from timecrisis.storage.postgres._migrate import available_migrations, latest_version, migrate
from timecrisis.storage.postgres._sql import render
from timecrisis.storage.postgres.store import InvalidSchemaNameError

pytestmark = pytest.mark.postgres


async def _versions(admin: Admin, schema: str) -> list[int]:
    cur = await admin.execute(
        sql.SQL("SELECT version FROM {}.timecrisis_migrations ORDER BY version").format(
            sql.Identifier(schema)
        )
    )
    return [row[0] for row in await cur.fetchall()]


async def test_ten_nodes_initialising_at_once_migrate_exactly_once(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    stores = [make_store(min_pool_size=1, max_pool_size=1) for _ in range(10)]

    await asyncio.gather(*(store.init() for store in stores))

    # A second application of any migration would have failed its DDL ("already exists").
    assert await _versions(admin, schema) == [m.version for m in available_migrations()]


async def test_ten_tasks_initialising_one_store_share_one_initialisation(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    store = make_store()

    await asyncio.gather(*(store.init() for _ in range(10)))

    assert await _versions(admin, schema) == [m.version for m in available_migrations()]


_INIT_SCRIPT = """
import asyncio, sys
from timecrisis.storage.base import JobQuery
from timecrisis.storage.postgres import PostgresJobStorage

async def main() -> None:
    store = PostgresJobStorage(sys.argv[1], schema=sys.argv[2], max_pool_size=1)
    try:
        await store.init()
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_processes_booting_at_once_migrate_exactly_once(
    pg_url: str, admin: Admin, schema: str
) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _INIT_SCRIPT,
            pg_url,
            schema,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outcomes = [await p.communicate() for p in processes]

    assert [p.returncode for p in processes] == [0] * 4, [err.decode() for _, err in outcomes]
    assert await _versions(admin, schema) == [m.version for m in available_migrations()]


async def test_a_schema_newer_than_the_code_is_refused(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    await make_store().init()
    await admin.execute(
        sql.SQL(
            "INSERT INTO {}.timecrisis_migrations (version, name) VALUES (%s, 'future')"
        ).format(sql.Identifier(schema)),
        (latest_version() + 1,),
    )

    with pytest.raises(StorageError, match="newer than this timecrisis"):
        await make_store().init()


async def test_an_existing_schema_with_other_tables_is_migrated_in_place(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    await admin.execute(
        sql.SQL("CREATE TABLE {}.app_table (id int)").format(sql.Identifier(schema))
    )

    store = make_store()
    await store.init()

    assert await store.list_jobs(JobQuery()) == []
    cur = await admin.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
        "AND table_name = 'app_table'",
        (schema,),
    )
    assert await cur.fetchone() == (1,)


async def _catalogue(admin: Admin, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Tables, columns, indexes and constraints of `schema`, with its name taken out."""

    async def rows(query: str) -> list[tuple[Any, ...]]:
        cur = await admin.execute(query, {"schema": schema})
        found = await cur.fetchall()
        return sorted(tuple(re.sub(rf'"?{schema}"?\.', "S.", str(v)) for v in row) for row in found)

    return {
        "columns": await rows(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = %(schema)s"
        ),
        "indexes": await rows(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %(schema)s"
        ),
        "constraints": await rows(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = %(schema)s"
        ),
    }


@pytest.mark.parametrize("start", [m.version for m in available_migrations()])
async def test_upgrading_from_any_version_equals_a_fresh_install(
    pg_url: str, admin: Admin, schema: str, start: int
) -> None:
    upgraded = f"{schema}_up"
    try:
        fresh = PostgresJobStorage(pg_url, schema=schema, max_pool_size=1)
        await fresh.init()
        await fresh.close()
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            await migrate(conn, upgraded, target=start)
            await migrate(conn, upgraded)
        expected, actual = await _catalogue(admin, schema), await _catalogue(admin, upgraded)
    finally:
        await admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(upgraded))
        )
    assert actual == expected


async def _check_values(admin: Admin, schema: str, table: str, column: str) -> set[str]:
    # Only this table's constraints reach pg_get_constraintdef (it is in the select list, not
    # the WHERE): on a shared server other tests drop their schemas meanwhile, and the
    # function fails on a relation dropped under it ("could not open relation with OID").
    cur = await admin.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "WHERE c.conrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) "
        "AND c.contype = 'c'",
        (schema, table),
    )
    [definition] = [row[0] for row in await cur.fetchall() if f"({column} = " in row[0]]
    return set(re.findall(r"'([a-z_]+)'::text", definition))


async def test_the_status_constraints_match_the_python_enums(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    await make_store().init()

    assert await _check_values(admin, schema, "jobs", "status") == {s.value for s in JobStatus}
    assert await _check_values(admin, schema, "job_runs", "status") == {s.value for s in RunStatus}


async def test_the_failure_kind_constraints_match_the_python_enum(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    await make_store().init()

    kinds = {k.value for k in FailureKind}
    assert await _check_values(admin, schema, "jobs", "failure_kind") == kinds
    assert await _check_values(admin, schema, "job_runs", "failure_kind") == kinds


@pytest.mark.parametrize(
    "name", ["", "Timecrisis", "has-dash", "1starts_with_digit", 'x"; DROP SCHEMA y; --', "a" * 51]
)
def test_a_schema_name_that_is_not_a_plain_identifier_is_refused(name: str) -> None:
    with pytest.raises(InvalidSchemaNameError):
        PostgresJobStorage("postgresql://localhost/x", schema=name)


async def test_schedules_and_workers_of_version_1_get_sensible_defaults(
    pg_url: str, admin: Admin, schema: str, make_store: StoreFactory
) -> None:
    # A schema written by version 1: a schedule without job options, a worker without its own
    # deadline. After the upgrade the schedule fires with the store defaults (as a leader that
    # did not know its type did) and the worker keeps the old 45 s deadline.
    start = datetime(2025, 1, 1, 12, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await migrate(conn, schema, target=1)
    table = sql.Identifier(schema)
    await admin.execute(
        sql.SQL(
            "INSERT INTO {}.scheduled_jobs VALUES ('s1', 'nightly', 'report', '{{}}', 'interval', "
            "'1h', NULL, true, true, %(t)s, NULL, %(t)s, %(t)s)"
        ).format(table),
        {"t": start},
    )
    await admin.execute(
        sql.SQL("INSERT INTO {}.workers VALUES ('old', %(t)s, %(t)s, false, 0)").format(table),
        {"t": start},
    )
    clock = ManualClock(start)
    store = make_store(clock=clock)

    schedule = await store.get_schedule("nightly")  # the first call migrates
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


_EXISTING_JOBS = (
    "INSERT INTO {schema}.jobs (id, type, data, status, priority, max_retries, backoff_strategy, "
    "retry_delay, max_retry_delay, run_at, created_at, dead_lettered, queue) VALUES "
    "('j1', 'email', '{{}}', 'completed', 1, 0, 'linear', 1, 1, now(), now(), false, 'default'), "
    "('j2', 'email', '{{}}', 'completed', 1, 1, 'linear', 1, 1, now(), now(), false, 'default'), "
    "('j3', 'email', '{{}}', 'failed', 1, 0, 'linear', 1, 1, now(), now(), true, 'default'), "
    "('j4', 'email', '{{}}', 'pending', 1, 0, 'linear', 1, 1, now(), now(), false, 'bulk'), "
    "('j5', 'report', '{{}}', 'running', 1, 0, 'linear', 1, 1, now(), now(), false, 'default'), "
    "('j6', 'report', '{{}}', 'canceled', 1, 0, 'linear', 1, 1, now(), now(), false, 'default');"
    "INSERT INTO {schema}.job_runs (id, job_id, job_type, attempt, status, worker, started_at, "
    "duration, failure_kind) VALUES "
    "('r1', 'j1', 'email', 1, 'completed', 'w', now(), 0.003, NULL), "
    "('r2', 'j2', 'email', 1, 'failed', 'w', now(), 1.0, 'error'), "
    "('r3', 'j2', 'email', 2, 'completed', 'w', now(), 2.0, NULL), "
    "('r4', 'j3', 'email', 1, 'failed', 'w', now(), 7200.0, 'lease_expired'), "
    "('r5', 'j5', 'report', 1, 'running', 'w', now(), NULL, NULL)"
)


async def test_the_counters_are_backfilled_from_the_jobs_and_runs_of_an_existing_schema(
    pg_url: str, admin: Admin, schema: str, make_store: StoreFactory
) -> None:
    """Version 9 keeps the counts the metrics read; a schema with jobs gets them counted once,
    then the statements keep them as the jobs change."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await migrate(conn, schema, target=7)
    await admin.execute(sql.SQL(_EXISTING_JOBS).format(schema=sql.Identifier(schema)))
    store = make_store()

    metrics = await store.get_metrics()  # the first call migrates
    stats = {(s.type, s.status): s for s in await store.get_run_stats()}

    assert list(metrics.types) == ["email", "report"]
    assert [t.model_dump() for t in metrics.types.values()] == [
        TypeMetrics(
            completed=2, failed=1, pending=1, dead_letter=1, average_duration=1.0015
        ).model_dump(),
        TypeMetrics(running=1, canceled=1).model_dump(),
    ]
    assert metrics.queues == {"bulk": QueueMetrics(pending=1), "default": QueueMetrics(running=1)}
    failed = stats["email", RunStatus.FAILED]
    assert (failed.runs, failed.lease_losses, failed.duration_buckets[7]) == (2, 1, 1)
    assert failed.duration_count == 2 and failed.duration_buckets[-1] == 1  # 7200 s: +Inf
    completed = stats["email", RunStatus.COMPLETED]
    assert (completed.runs, completed.retries, completed.duration_buckets[0]) == (2, 1, 1)
    running = stats["report", RunStatus.RUNNING]  # r5, an older node's claim: counted once
    assert (running.runs, running.duration_count) == (1, 0)
    counted = await admin.execute(
        sql.SQL(
            "SELECT type, queue, status, dead_lettered, sum(n) FROM ("
            "SELECT * FROM {s}.job_counts UNION ALL SELECT * FROM {s}.job_count_deltas) AS c "
            "GROUP BY 1, 2, 3, 4 HAVING sum(n) > 0 ORDER BY 1, 2, 3, 4"
        ).format(s=sql.Identifier(schema))
    )
    aggregated = await admin.execute(
        sql.SQL(
            "SELECT type, queue, status, dead_lettered, count(*) FROM {s}.jobs "
            "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        ).format(s=sql.Identifier(schema))
    )
    assert await counted.fetchall() == await aggregated.fetchall()

    assert await store.retry_job("j3")
    after = await store.get_metrics()
    assert (after.types["email"].failed, after.types["email"].pending) == (0, 2)
    assert after.dead_letter == 0


async def test_run_bucket_buckets_durations_as_the_store_does(
    admin: Admin, schema: str, make_store: StoreFactory
) -> None:
    """`run_bucket` (migration 9 writes the bounds out) against `duration_bucket`, at every
    bound and on either side of it."""
    await make_store().init()
    durations = [d for bound in RUN_DURATION_BUCKETS for d in (bound * 0.999, bound, bound * 1.001)]

    cur = await admin.execute(
        sql.SQL(
            "SELECT {}.run_bucket(d) FROM unnest(%s::float8[]) WITH ORDINALITY AS t(d, n) "
            "ORDER BY n"
        ).format(sql.Identifier(schema)),
        [[None, *durations]],
    )

    assert [row[0] for row in await cur.fetchall()] == [
        -1,
        *(duration_bucket(d) for d in durations),
    ]


async def test_the_folded_counts_equal_the_unfolded_ones(
    admin: Admin, schema: str, make_store: StoreFactory
) -> None:
    """The claims and completions only append deltas; a metrics read folds them (under its
    try-lock) into the counters, and answers the same before and after."""
    store = make_store()
    await store.insert_jobs([NewJob(id=f"job-{n}", type="email", data={}) for n in range(6)])
    params = ClaimParams("w", 4, timedelta(seconds=30), {"email": None})
    claimed = await store.claim_jobs(params)
    await store.complete_jobs([Completion(c.ref) for c in claimed[:3]])
    deltas = sql.SQL("SELECT count(*) FROM {}.job_count_deltas").format(sql.Identifier(schema))
    assert (await (await admin.execute(deltas)).fetchone() or [0])[0] > 0

    metrics = await store.get_metrics()

    assert (await (await admin.execute(deltas)).fetchone() or [1])[0] == 0
    assert (metrics.pending, metrics.running, metrics.completed) == (2, 1, 3)
    assert await store.get_metrics() == metrics


_RUNNING_BEFORE_0009 = (
    "INSERT INTO {schema}.jobs (id, type, data, status, priority, max_retries, backoff_strategy, "
    "retry_delay, max_retry_delay, run_at, created_at, dead_lettered, queue, attempts, worker, "
    "started_at, lock_token, lock_expires_at, run_id) VALUES "
    "('j1', 'email', '{{}}', 'running', 1, 0, 'linear', 1, 1, now(), now(), false, 'default', "
    "2, 'w', now() - interval '3 s', 't1', now() - interval '1 s', 'r2'), "
    "('j2', 'email', '{{}}', 'running', 1, 0, 'linear', 1, 1, now(), now(), false, 'default', "
    "1, 'w', now() - interval '3 s', 't2', now() + interval '1 h', 'r3');"
    "INSERT INTO {schema}.job_runs (id, job_id, job_type, attempt, status, worker, started_at, "
    "finished_at, duration, failure_kind) VALUES "
    "('r1', 'j1', 'email', 1, 'failed', 'w', now() - interval '9 s', now() - interval '8 s', "
    "1.0, 'error'), "
    "('r2', 'j1', 'email', 2, 'running', 'w', now() - interval '3 s', NULL, NULL, NULL), "
    "('r3', 'j2', 'email', 1, 'running', 'w', now() - interval '3 s', NULL, NULL, NULL)"
)


async def test_a_running_row_written_before_0009_is_counted_once_then_once_as_it_ends(
    pg_url: str, admin: Admin, schema: str, make_store: StoreFactory
) -> None:
    """Code older than 0009 and 0010 inserted a running run row at each claim. Version 9's
    backfill leaves those out of the run counters (from 10 on, the running attempts are counted
    from the running jobs), so each counts once while it runs, and once as it ends: here a lease
    recovery closes the row (ON CONFLICT in `apply_failures`) and counts the failed run."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await migrate(conn, schema, target=7)
    await admin.execute(sql.SQL(_RUNNING_BEFORE_0009).format(schema=sql.Identifier(schema)))
    store = make_store()

    def runs(stats: list[RunStats]) -> dict[RunStatus, tuple[int, int]]:
        return {s.status: (s.runs, s.retries) for s in stats}

    assert runs(await store.get_run_stats()) == {
        RunStatus.FAILED: (1, 0),
        RunStatus.RUNNING: (2, 1),
    }

    [outcome] = await store.recover_expired_leases()

    assert outcome.job.id == "j1"
    assert runs(await store.get_run_stats()) == {
        RunStatus.FAILED: (2, 1),
        RunStatus.RUNNING: (1, 0),
    }
    metrics = await store.get_metrics()
    assert (metrics.running, metrics.failed, metrics.dead_letter) == (1, 1, 1)


async def test_a_schema_with_version_10_but_not_9_gets_9_on_its_next_start(
    pg_url: str, admin: Admin, schema: str, make_store: StoreFactory
) -> None:
    """Version 10 (runs written once) was merged before version 9 (the kept counts): a schema
    made in between holds 1-7 and 10. The next start applies 9 as well, and the counts it
    backfills are exact: the running job counts once, its ended run once."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await migrate(conn, schema, target=7)
        [ten] = [m for m in available_migrations() if m.version == 10]
        async with conn.transaction():
            await conn.execute(render(ten.script, schema))
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {}.timecrisis_migrations (version, name) VALUES (10, %s)"
                ).format(sql.Identifier(schema)),
                (ten.name,),
            )
    await admin.execute(sql.SQL(_RUNNING_BEFORE_0009).format(schema=sql.Identifier(schema)))
    await admin.execute(
        sql.SQL("DELETE FROM {}.job_runs WHERE status = 'running'").format(sql.Identifier(schema))
    )  # what 0010's claims leave: no running row
    store = make_store()

    stats = {s.status: (s.runs, s.retries) for s in await store.get_run_stats()}

    assert await _versions(admin, schema) == [m.version for m in available_migrations()]
    assert stats == {RunStatus.FAILED: (1, 0), RunStatus.RUNNING: (2, 1)}
    assert (await store.get_metrics()).running == 2


async def test_version_11_flags_the_pending_jobs_delayed_into_the_future(
    pg_url: str, admin: Admin, schema: str, make_store: StoreFactory
) -> None:
    """A schema of version 10 with delayed jobs: the upgrade keeps them out of the queue
    indexes (`waiting`), and a claim takes the due ones as before, each in claim order."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await migrate(conn, schema, target=10)
    store = make_store()
    await admin.execute(
        sql.SQL(
            "INSERT INTO {s}.jobs (id, type, data, status, run_at, created_at, priority, "
            "max_retries, backoff_strategy, retry_delay, max_retry_delay) VALUES "
            "('later', 't', '{{}}', 'pending', now() + interval '1 day', now(), 5, 0, 'linear', "
            "1, 1), "
            "('due', 't', '{{}}', 'pending', now() - interval '1 second', now(), 0, 0, 'linear', "
            "1, 1), "
            "('done', 't', '{{}}', 'completed', now() + interval '1 day', now(), 0, 0, 'linear', "
            "1, 1)"
        ).format(s=sql.Identifier(schema))
    )

    claimed = await store.claim_jobs(
        ClaimParams(worker="w", limit=5, lease_ttl=timedelta(seconds=30), type_limits={"t": None})
    )  # the first call migrates

    assert 11 in await _versions(admin, schema)
    assert [c.job.id for c in claimed] == ["due"]
    cur = await admin.execute(
        sql.SQL("SELECT id FROM {}.jobs WHERE waiting ORDER BY id").format(sql.Identifier(schema))
    )
    assert await cur.fetchall() == [("later",)]
