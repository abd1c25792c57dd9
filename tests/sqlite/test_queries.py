"""Query plans and stored representations of the SQLite store.

Listing pages, maintenance passes and metrics must stay cheap on a table of millions of jobs:
each runs its statements through an index and sorts nothing. The plans are read with EXPLAIN
QUERY PLAN from the exact statements the store executes (captured with a trace callback), so
a change to a query or an index that loses this fails here.
"""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.sqlite.conftest import StoreFactory
from tests.storage.factories import START, get, insert_one
from timecrisis.models import JobStatus
from timecrisis.storage.base import ClaimParams, JobQuery, PurgeParams
from timecrisis.storage.sqlite import _claims, _history, _jobs
from timecrisis.storage.sqlite._connection import open_connection
from timecrisis.storage.sqlite._migrate import migrate


@pytest.fixture
def conn(db_path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    connection = open_connection(db_path, busy_timeout=1)
    try:
        migrate(connection, START)
        yield connection
    finally:
        connection.close()


def _plans(conn: sqlite3.Connection, call: Callable[[], object]) -> list[list[str]]:
    """The query plan of every SELECT, UPDATE or DELETE that `call` runs on `conn`."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    return [
        [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        for sql in statements
        if sql.lstrip().split(" ", 1)[0].upper() in ("SELECT", "UPDATE", "DELETE")
    ]


def _assert_indexed(plans: list[list[str]], index: str) -> None:
    steps = [step for plan in plans for step in plan]
    assert any(index in step for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), steps
    assert not any(step == "SCAN jobs" for step in steps), steps


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (JobQuery(status=JobStatus.FAILED, cursor="some-job"), "jobs_status_seq"),
        (JobQuery(type="email"), "jobs_type_seq"),
        (JobQuery(entity_id="customer-1"), "jobs_entity_seq"),
        (JobQuery(dead_lettered=True, cursor="some-job"), "jobs_dead_letters"),
    ],
)
def test_a_filtered_page_of_jobs_is_read_from_an_index_in_order(
    conn: sqlite3.Connection, query: JobQuery, index: str
) -> None:
    conn.execute(
        "INSERT INTO jobs (id, type, data, status, priority, max_retries, backoff_strategy, "
        "retry_delay, max_retry_delay, run_at, created_at) "
        "VALUES ('some-job', 'email', '{}', 'pending', 1, 0, 'linear', 1, 1, 0, 0)"
    )

    _assert_indexed(_plans(conn, lambda: _jobs.list_jobs(conn, query)), index)


def test_an_unfiltered_page_walks_the_rowid_backwards_without_sorting(
    conn: sqlite3.Connection,
) -> None:
    steps = [
        step for plan in _plans(conn, lambda: _jobs.list_jobs(conn, JobQuery())) for step in plan
    ]

    assert not any("TEMP B-TREE" in step for step in steps), steps


@pytest.mark.parametrize(
    ("name", "call", "index"),
    [
        ("expire", lambda c: _jobs.expire_jobs(c, 100, START), "jobs_pending_expiry"),
        (
            "recover",
            lambda c: _claims.recover_expired_leases(c, 100, START),
            "jobs_running_lease",
        ),
        ("purge", lambda c: _jobs.purge_jobs(c, PurgeParams(limit=100), START), "jobs_finished"),
        (
            "running counts of a claim",
            lambda c: _claims._quotas(
                c, ClaimParams("w", 10, timedelta(seconds=1), {"a": 2, "b": 3, "c": None})
            ),
            "COVERING INDEX jobs_type_status",
        ),
    ],
)
def test_maintenance_passes_and_claim_counts_read_only_their_index(
    conn: sqlite3.Connection,
    name: str,
    call: Callable[[sqlite3.Connection], object],
    index: str,
) -> None:
    _assert_indexed(_plans(conn, lambda: call(conn)), index)


def test_metrics_and_run_stats_read_the_counters_never_the_jobs_or_runs(
    conn: sqlite3.Connection,
) -> None:
    def reads() -> None:
        _history.get_metrics(conn)
        _history.get_run_stats(conn)

    steps = [step for plan in _plans(conn, reads) for step in plan]

    assert any("job_counts" in step for step in steps), steps
    assert any("run_counts" in step for step in steps), steps
    assert not any(" jobs" in step or " job_runs" in step for step in steps), steps


# ---- stored representation -------------------------------------------------------------------


async def test_times_are_stored_as_integer_microseconds_and_read_back_exactly_in_utc(
    make_store: StoreFactory, db_path: pathlib.Path
) -> None:
    store = make_store()
    paris_summer = timezone(timedelta(hours=2))
    run_at = datetime(2031, 7, 14, 9, 30, 15, 123457, tzinfo=paris_summer)

    job_id = await insert_one(store, run_at=run_at)

    job = await get(store, job_id)
    assert job.run_at == run_at
    assert job.run_at.tzinfo == UTC
    assert job.run_at.microsecond == 123457
    raw = sqlite3.connect(db_path)
    try:
        [(stored,)] = raw.execute("SELECT run_at FROM jobs WHERE id = ?", (job_id,)).fetchall()
    finally:
        raw.close()
    assert stored == (run_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
