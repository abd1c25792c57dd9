"""Every statement of `postgres/queries.sql` is prepared by PostgreSQL against a migrated
schema, as it stands in the file (only `{schema}` filled in): a broken statement (a typo, a
dropped column, a type that no longer matches) fails here, not at the first call that happens
to run it."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.postgres.conftest import Admin, StoreFactory
from timecrisis.storage._queries import load_queries
from timecrisis.storage.postgres._sql import Queries

pytestmark = pytest.mark.postgres

# Parameters whose type PostgreSQL cannot infer from the statement alone (psycopg sends them
# typed: a timedelta as an interval, a bool as a boolean).
_TYPES = {
    "age": "interval",
    "ttl": "interval",
    "default_ttl": "interval",
    "delay": "interval",
    "since": "timestamptz",
    "next": "timestamptz",
    "expected": "timestamptz",
    "fire_at": "timestamptz",
    "disable": "boolean",
    "leader": "boolean",
    "enabled": "boolean",
    "overlap": "boolean",
}


def _prepare(name: str, query: bytes) -> str:
    """A PREPARE of `query`, its `%(name)s` parameters numbered (and typed where needed)."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, query.decode())
    types = ", ".join(_TYPES.get(p, "unknown") for p in order)
    return f"PREPARE {name} ({types}) AS {text}" if order else f"PREPARE {name} AS {text}"


def _is_ddl(statement: bytes) -> bool:
    return statement.lstrip().upper().startswith(b"CREATE ")


def _is_copy(statement: bytes) -> bool:
    return statement.lstrip().upper().startswith(b"COPY ")


async def test_every_statement_is_prepared_by_the_database(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    await make_store().init()  # migrates the schema
    queries = Queries(schema)
    failures: dict[str, str] = {}
    for name in load_queries("timecrisis.storage.postgres"):
        if _is_ddl(queries[name]) or _is_copy(queries[name]):
            continue  # PREPARE takes neither DDL nor COPY: see the next tests
        try:
            await admin.execute(_prepare(f"tc_check_{name}", queries[name]).encode())
        except Exception as error:
            failures[name] = str(error)  # every broken statement is reported at once
    await admin.execute("DEALLOCATE ALL")

    assert failures == {}


async def test_the_schema_statements_run_in_a_transaction_that_is_rolled_back(
    admin: Admin, schema: str
) -> None:
    fresh = Queries(f"{schema}_ddl")  # a schema that does not exist yet
    names = [name for name in load_queries("timecrisis.storage.postgres") if _is_ddl(fresh[name])]
    assert names == ["create_schema", "create_migrations_table"]
    async with admin.transaction():
        for name in names:
            await admin.execute(fresh[name])
        raise psycopg.Rollback  # leaves no trace: the transaction context swallows it


async def test_the_copy_statements_start_and_end_on_the_migrated_schema(
    make_store: StoreFactory, admin: Admin, schema: str
) -> None:
    await make_store().init()
    queries = Queries(schema)
    names = [
        name for name in load_queries("timecrisis.storage.postgres") if _is_copy(queries[name])
    ]
    assert names == ["copy_jobs"]
    async with admin.transaction(force_rollback=True):
        for name in names:
            # Started (so every column named exists) and ended without a row.
            async with admin.cursor().copy(queries[name]):
                pass
