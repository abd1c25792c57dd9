"""Fixtures for the PostgreSQL-specific tests: a fresh schema per test (dropped afterwards),
stores on it that are closed at teardown, and an admin connection to inspect the database
from outside the store and to terminate its backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.pg_support import adrop_schema, fresh_schema, require_postgres
from timecrisis.storage.postgres import PostgresJobStorage

StoreFactory = Callable[..., PostgresJobStorage]
Admin = psycopg.AsyncConnection[tuple[Any, ...]]


@pytest.fixture
def pg_url() -> str:
    return require_postgres()


@pytest.fixture
async def schema(pg_url: str) -> AsyncIterator[str]:
    name = fresh_schema()
    try:
        yield name
    finally:
        await adrop_schema(pg_url, name)


@pytest.fixture
def tagged_dsn(pg_url: str, schema: str) -> str:
    """The test URL with an application_name unique to this test, so the test can find (and
    terminate) exactly its own store's connections, never another test's."""
    return make_conninfo(pg_url, application_name=f"tc-{schema}")


@pytest.fixture
async def make_store(pg_url: str, schema: str) -> AsyncIterator[StoreFactory]:
    """Builds stores on the test's schema (`dsn=` and any constructor option may be given);
    every one is closed at teardown, before the schema is dropped."""
    stores: list[PostgresJobStorage] = []

    def factory(dsn: str | None = None, **options: Any) -> PostgresJobStorage:
        options.setdefault("schema", schema)
        store = PostgresJobStorage(dsn or pg_url, **options)
        stores.append(store)
        return store

    try:
        yield factory
    finally:
        for store in stores:
            await store.close()


@pytest.fixture
async def admin(pg_url: str) -> AsyncIterator[Admin]:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        yield conn


async def terminate_backends(admin: Admin, application_name: str) -> int:
    """pg_terminate_backend every connection with this application_name, waiting (up to 5 s
    each) until each is gone; returns how many there were."""
    cur = await admin.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def terminate_pid(admin: Admin, pid: int) -> bool:
    cur = await admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    row = await cur.fetchone()
    return bool(row and row[0])
