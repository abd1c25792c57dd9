"""The job and run counters of the SQLite store (migration 0009), kept by the functions that move
jobs or runs between keys, inside their write transaction.

One grouped upsert per batch and counter, not one per row: a completion of 25 jobs is two
statements that read those 25 rows back by key and add the few (type, queue, status) and run
keys they changed. Row triggers did the same without being asked, and cost W2 9-14 % (two
trigger programs and about seven B-tree writes per job). SQLite has one writer at a time, so
the counters are updated in place; there is no hot row to avoid.

Every write that changes a job's key (type, queue, status, dead-letter flag) or a run's key
(status, failure kind, duration bucket) or removes rows calls one of these; the conformance
test tests/storage/test_counts.py checks the counters against the records after each kind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from timecrisis.storage._queries import load_queries
from timecrisis.storage._run_stats import duration_bucket
from timecrisis.storage.sqlite._rows import json_array

Q = load_queries("timecrisis.storage.sqlite")

NO_BUCKET = -1  # a run without a duration (a primary key cannot hold NULL)


def run_bucket(duration: float | None) -> int:
    """`timecrisis_run_bucket()` in SQL: a run's duration bucket for the run counters."""
    return NO_BUCKET if duration is None else duration_bucket(duration)


def jobs_moved(conn: sqlite3.Connection, job_ids: Sequence[str], was: str) -> None:
    """The jobs `job_ids` were all `was` (pending or running: never dead-lettered) before this
    transaction changed them; move each from that key to the one it has now."""
    if job_ids:
        ids = json_array(job_ids)
        conn.execute(Q["count_jobs_moved"], (ids, was, ids))


def jobs_counted(conn: sqlite3.Connection, job_ids: Sequence[str], sign: int) -> None:
    """Count the jobs `job_ids` in (+1, after an insert) or out (-1, before a delete) of the
    keys they have now. A change from keys not known beforehand is -1 before, +1 after."""
    if job_ids:
        conn.execute(Q["count_jobs"], (sign, json_array(job_ids)))


def runs_closed(conn: sqlite3.Connection, run_ids: Sequence[str]) -> None:
    """The runs `run_ids` were running (no failure kind, no duration) before this transaction
    closed them; move each from that key to the one it has now."""
    if run_ids:
        ids = json_array(run_ids)
        conn.execute(Q["count_runs_closed"], (ids, ids))


def runs_counted(conn: sqlite3.Connection, run_ids: Sequence[str], sign: int) -> None:
    """Count the runs `run_ids` in (+1, after the claim inserted them) or out (-1)."""
    if run_ids:
        conn.execute(Q["count_runs"], (sign, sign, sign, json_array(run_ids)))


def runs_of_jobs_removed(conn: sqlite3.Connection, job_ids: Sequence[str]) -> None:
    """Count out every run of the jobs `job_ids`, before they are deleted with their jobs."""
    if job_ids:
        conn.execute(Q["count_runs_of_jobs_removed"], (json_array(job_ids),))
