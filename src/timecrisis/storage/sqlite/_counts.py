"""The job and run counters of the SQLite store (migration 0009), kept by the functions that move
jobs or runs between keys, inside their write transaction.

Per batch, not per row, and only the keys that changed: SQLite has one writer at a time, so
the counters are updated in place, in the write's own transaction; there is no hot row to
avoid. Row triggers did the same without being asked, and cost W2 9-14 % (two trigger programs
and about seven B-tree writes per job).

The worker's hot path (claim, completion, release, snooze) knows every job's key already (the
claim's RETURNING, `_claims.current_claims`), so it adds its changes up in a `Deltas` and writes
them with two `executemany` upserts of a few rows. Reading the 25 rows of a batch back by key
instead (the `count_*` statements, which the colder paths use: failures, cancels, retries,
expiry, purges, inserts) cost 0.4 ms per `complete_and_claim`, a fifth of the store's CPU.

Every write that changes a job's key (type, queue, status, dead-letter flag) or a run's key
(status, failure kind, duration bucket) or removes rows calls one of these; the conformance
test tests/storage/test_counts.py checks the counters against the records after each kind.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from timecrisis.storage._queries import load_queries
from timecrisis.storage._run_stats import duration_bucket
from timecrisis.storage.sqlite._rows import json_array

Q = load_queries("timecrisis.storage.sqlite")

NO_BUCKET = -1  # a run without a duration (a primary key cannot hold NULL)


def run_bucket(duration: float | None) -> int:
    """`timecrisis_run_bucket()` in SQL: a run's duration bucket for the run counters."""
    return NO_BUCKET if duration is None else duration_bucket(duration)


@dataclass(slots=True)
class Deltas:
    """Counter changes added up in Python, written by `write` in one statement per table."""

    jobs: Counter[tuple[str, str, str, int]] = field(default_factory=Counter)
    # (type, status, failure kind, bucket) -> [runs, retries, duration_sum_us]
    runs: dict[tuple[str, str, str, int], list[int]] = field(default_factory=dict)

    def job_moved(self, job_type: str, queue: str, was: str, now: str, dead: bool = False) -> None:
        """A job left `was` (pending or running: never dead-lettered) for `now`."""
        self.jobs[job_type, queue, was, 0] -= 1
        self.jobs[job_type, queue, now, int(dead)] += 1

    def run_started(self, job_type: str, attempt: int) -> None:
        self._run(job_type, "running", "", NO_BUCKET, 1, attempt, 0)

    def run_closed(self, job_type: str, attempt: int, status: str, duration: float) -> None:
        """A running run ended `status` after `duration` seconds, without a failure kind: the
        duration the statement stored, `(now - started_at) / 1e6`, computed the same way."""
        self._run(job_type, "running", "", NO_BUCKET, -1, attempt, 0)
        us = round(duration * 1_000_000)
        self._run(job_type, status, "", run_bucket(duration), 1, attempt, us)

    def _run(
        self, job_type: str, status: str, kind: str, bucket: int, n: int, attempt: int, us: int
    ) -> None:
        totals = self.runs.setdefault((job_type, status, kind, bucket), [0, 0, 0])
        totals[0] += n
        totals[1] += n * (attempt > 1)
        totals[2] += n * us

    def write(self, conn: sqlite3.Connection) -> None:
        jobs = [(*key, n) for key, n in self.jobs.items() if n]
        if jobs:
            conn.executemany(Q["add_job_counts"], jobs)
        runs = [(*key, *totals) for key, totals in self.runs.items() if any(totals)]
        if runs:
            conn.executemany(Q["add_run_counts"], runs)


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


def runs_of_jobs_removed(conn: sqlite3.Connection, job_ids: Sequence[str]) -> None:
    """Count out every run of the jobs `job_ids`, before they are deleted with their jobs."""
    if job_ids:
        conn.execute(Q["count_runs_of_jobs_removed"], (json_array(job_ids),))
