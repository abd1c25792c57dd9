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
from timecrisis.storage.sqlite._claims import MAX_ARMS, _merge_heads, _Scope
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


# Every arm a claim's scope picks (`_Scope.arm`), plain and keyed: every queue, every queue but
# the paused ones, one named queue, several named queues.
SCOPES = [
    _Scope(queues=None, paused=()),
    _Scope(queues=None, paused=("p",)),
    _Scope(queues=("a",), paused=()),
    _Scope(queues=("a", "b", "c"), paused=()),
]
SCOPE_ARMS = [scope.arm(keyed) for scope in SCOPES for keyed in (False, True)]


@pytest.mark.parametrize("name", ["claim_jobs", "claim_candidates"])
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(
    "keyed",
    [(False,), (True,), (False, True), (False,) * MAX_ARMS, (True, False) * (MAX_ARMS // 2)],
)
def test_the_merged_claim_statements_compile_for_any_number_and_kind_of_types(
    conn: sqlite3.Connection, name: str, scope: _Scope, keyed: tuple[bool, ...]
) -> None:
    _compile(conn, _merge_heads(name, tuple(scope.arm(key) for key in keyed)))


def test_every_head_of_queries_sql_is_an_arm_some_scope_picks() -> None:
    """Each (scope, keyed) pair has its own arm, and no head query is left unused."""
    heads = {
        name
        for name in QUERIES
        if name.startswith("claim_") and name.endswith(("_head", "_head_keyed", "_paused"))
    }
    merged = {"claim_named_queues_head", "claim_named_queues_head_keyed"}  # several named queues

    assert len(set(SCOPE_ARMS)) == len(SCOPE_ARMS) == 8
    assert heads == {name for name, _ in SCOPE_ARMS} | merged


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("keyed", [False, True])
def test_each_arm_takes_the_args_its_scope_gives(
    conn: sqlite3.Connection, scope: _Scope, keyed: bool
) -> None:
    sql = _merge_heads("claim_candidates", (scope.arm(keyed),))
    args = scope.arm_args("t", 5, 0, key_cap=2 if keyed else None)

    assert sql.count("?") == len(args) + 1  # the limit
    conn.execute(sql, [*args, 5]).fetchall()


def test_every_statement_that_returns_jobs_lists_the_columns_job_from_row_reads() -> None:
    returning_jobs = [text for text in QUERIES.values() if "failure_kind, headers" in text]

    assert len(returning_jobs) >= 8
    for text in returning_jobs:
        assert JOB_COLUMNS in " ".join(text.split()), text
