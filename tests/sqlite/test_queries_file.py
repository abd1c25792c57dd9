"""Every statement of `sqlite/queries.sql` compiles against a migrated database, as it stands in
the file: a broken statement (a typo, a dropped column, a misnamed index) fails here, not at
the first call that happens to run it."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

from tests.storage.factories import START
from timecrisis.storage._queries import load_queries
from timecrisis.storage.sqlite._claims import MAX_ARMS, _merge_heads
from timecrisis.storage.sqlite._connection import open_connection
from timecrisis.storage.sqlite._migrate import migrate
from timecrisis.storage.sqlite._rows import JOB_COLUMNS

QUERIES = load_queries("timecrisis.storage.sqlite")


@pytest.fixture
def conn(db_path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    connection = open_connection(db_path, busy_timeout=1)  # registers timecrisis_new_id()
    try:
        migrate(connection, START)
        yield connection
    finally:
        connection.close()


def _compile(conn: sqlite3.Connection, statement: str) -> None:
    """Prepare `statement` (EXPLAIN compiles it without running it), every `?` bound NULL."""
    conn.execute(f"EXPLAIN {statement}", [None] * statement.count("?")).fetchall()


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_statement_compiles_as_written(conn: sqlite3.Connection, name: str) -> None:
    _compile(conn, QUERIES[name])


@pytest.mark.parametrize("name", ["claim_jobs", "claim_candidates"])
@pytest.mark.parametrize("arms", [1, 2, MAX_ARMS])
def test_the_merged_claim_statements_compile_for_any_number_of_types(
    conn: sqlite3.Connection, name: str, arms: int
) -> None:
    _compile(conn, _merge_heads(name, arms))


def test_every_statement_that_returns_jobs_lists_the_columns_job_from_row_reads() -> None:
    returning_jobs = [text for text in QUERIES.values() if "failure_kind, headers" in text]

    assert len(returning_jobs) >= 8
    for text in returning_jobs:
        assert JOB_COLUMNS in " ".join(text.split()), text
