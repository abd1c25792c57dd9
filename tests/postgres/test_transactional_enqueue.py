"""Transactional enqueue: `insert_jobs(..., connection=conn)` writes inside the caller's
transaction. Commit: the job exists, next to the application's own write, and the wake-up is
sent. Rollback: no job and no wake-up. Notifications are observed in order against a sentinel
sent from another connection, so nothing here depends on timing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql

from tests.postgres.conftest import Admin, StoreFactory
from timecrisis.errors import StorageError
from timecrisis.storage._common import new_id
from timecrisis.storage.base import NewJob
from timecrisis.storage.postgres import PostgresJobStorage

pytestmark = pytest.mark.postgres

GUARD_SECONDS = 10  # a hang guard, not a timing assertion


@pytest.fixture
async def store(make_store: StoreFactory, admin: Admin, schema: str) -> PostgresJobStorage:
    store = make_store()
    await store.init()
    await admin.execute(
        sql.SQL("CREATE TABLE {}.orders (id text PRIMARY KEY)").format(sql.Identifier(schema))
    )
    return store


@pytest.fixture
async def app_conn(pg_url: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        yield conn


@pytest.fixture
async def listener(
    pg_url: str, schema: str
) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"timecrisis_{schema}")))
        yield conn


async def _next_payload(listener: psycopg.AsyncConnection[tuple[object, ...]]) -> str:
    async for notify in listener.notifies(timeout=GUARD_SECONDS, stop_after=1):
        return notify.payload
    raise AssertionError("no notification arrived")


async def _sentinel(admin: Admin, schema: str, payload: str) -> None:
    await admin.execute("SELECT pg_notify(%s, %s)", (f"timecrisis_{schema}", payload))


async def _order(conn: psycopg.AsyncConnection[tuple[object, ...]], schema: str) -> str:
    order_id = new_id()
    await conn.execute(
        sql.SQL("INSERT INTO {}.orders (id) VALUES (%s)").format(sql.Identifier(schema)),
        (order_id,),
    )
    return order_id


async def _order_exists(admin: Admin, schema: str, order_id: str) -> bool:
    cur = await admin.execute(
        sql.SQL("SELECT 1 FROM {}.orders WHERE id = %s").format(sql.Identifier(schema)),
        (order_id,),
    )
    return await cur.fetchone() is not None


async def test_a_committed_enqueue_exists_with_the_applications_write(
    store: PostgresJobStorage,
    app_conn: psycopg.AsyncConnection[tuple[object, ...]],
    admin: Admin,
    schema: str,
) -> None:
    job = NewJob(id=new_id(), type="t", data={"order": 1})
    async with app_conn.transaction():
        order_id = await _order(app_conn, schema)
        [result] = await store.insert_jobs([job], connection=app_conn)
        assert await store.get_job(job.id) is None  # other sessions cannot see it yet

    assert result.created
    assert await store.get_job(job.id) is not None
    assert await _order_exists(admin, schema, order_id)


async def test_a_rolled_back_enqueue_leaves_no_job(
    store: PostgresJobStorage,
    app_conn: psycopg.AsyncConnection[tuple[object, ...]],
    admin: Admin,
    schema: str,
) -> None:
    job = NewJob(id=new_id(), type="t", data={})
    async with app_conn.transaction(force_rollback=True):  # e.g. the payment was declined
        order_id = await _order(app_conn, schema)
        await store.insert_jobs([job], connection=app_conn)

    assert await store.get_job(job.id) is None
    assert not await _order_exists(admin, schema, order_id)


async def test_an_enqueue_as_the_first_statement_joins_the_implicit_transaction(
    store: PostgresJobStorage,
    app_conn: psycopg.AsyncConnection[tuple[object, ...]],
    admin: Admin,
    schema: str,
) -> None:
    """Not in autocommit and no statement yet (the first write of a Django `atomic()` block):
    the job belongs to the transaction the caller then rolls back, not to one of its own."""
    assert not app_conn.autocommit
    job = NewJob(id=new_id(), type="t", data={})
    await store.insert_jobs([job], connection=app_conn)
    order_id = await _order(app_conn, schema)
    await app_conn.rollback()

    assert await store.get_job(job.id) is None
    assert not await _order_exists(admin, schema, order_id)


async def test_the_wakeup_is_sent_only_when_the_caller_commits(
    store: PostgresJobStorage,
    app_conn: psycopg.AsyncConnection[tuple[object, ...]],
    listener: psycopg.AsyncConnection[tuple[object, ...]],
    admin: Admin,
    schema: str,
) -> None:
    async with app_conn.transaction():
        await store.insert_jobs([NewJob(id=new_id(), type="t", data={})], connection=app_conn)
        # Notifications arrive in commit order: the sentinel, committed now, comes first
        # unless the enqueue notified outside the caller's transaction.
        await _sentinel(admin, schema, "before-commit")
        assert await _next_payload(listener) == "before-commit"

    assert await _next_payload(listener) == ""  # the enqueue's own wake-up, at commit


async def test_a_rolled_back_enqueue_sends_no_wakeup(
    store: PostgresJobStorage,
    app_conn: psycopg.AsyncConnection[tuple[object, ...]],
    listener: psycopg.AsyncConnection[tuple[object, ...]],
    admin: Admin,
    schema: str,
) -> None:
    async with app_conn.transaction(force_rollback=True):
        await store.insert_jobs([NewJob(id=new_id(), type="t", data={})], connection=app_conn)

    await _sentinel(admin, schema, "after-rollback")
    assert await _next_payload(listener) == "after-rollback"


async def test_a_failed_enqueue_leaves_the_callers_transaction_usable(
    store: PostgresJobStorage,
    app_conn: psycopg.AsyncConnection[tuple[object, ...]],
    admin: Admin,
    schema: str,
) -> None:
    existing = NewJob(id=new_id(), type="t", data={})
    await store.insert_jobs([existing])

    async with app_conn.transaction():
        with pytest.raises(StorageError):
            await store.insert_jobs([existing], connection=app_conn)  # its id is taken
        order_id = await _order(app_conn, schema)

    assert await _order_exists(admin, schema, order_id)


async def test_a_unique_key_held_elsewhere_is_reported_inside_the_transaction(
    store: PostgresJobStorage, app_conn: psycopg.AsyncConnection[tuple[object, ...]]
) -> None:
    [holder] = await store.insert_jobs([NewJob(id=new_id(), type="t", data={}, unique_key="k")])

    async with app_conn.transaction():
        [result] = await store.insert_jobs(
            [NewJob(id=new_id(), type="t", data={}, unique_key="k")], connection=app_conn
        )

    assert (result.id, result.created) == (holder.id, False)


async def test_connection_must_be_a_psycopg_connection(store: PostgresJobStorage) -> None:
    # A blocking psycopg.Connection is accepted too: tests/postgres/test_sync_enqueue.py.
    with pytest.raises(TypeError, match="AsyncConnection"):
        await store.insert_jobs([NewJob(id=new_id(), type="t", data={})], connection="dsn")
