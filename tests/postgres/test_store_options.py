"""Constructing and owning a PostgreSQL store: from a URL, from a pool you own (never closed by
the store), closing, and an unclosed store that must not keep the interpreter alive."""

from __future__ import annotations

import asyncio
import sys

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.postgres.conftest import StoreFactory
from timecrisis import storage_from_url
from timecrisis.errors import StorageError
from timecrisis.storage._common import new_id
from timecrisis.storage.base import JobQuery, NewJob
from timecrisis.storage.postgres import PostgresJobStorage

pytestmark = pytest.mark.postgres


def _job() -> NewJob:
    return NewJob(id=new_id(), type="t", data={})


async def test_a_url_with_a_schema_parameter_opens_that_schema(pg_url: str, schema: str) -> None:
    store = storage_from_url(f"{pg_url}?schema={schema}")
    assert isinstance(store, PostgresJobStorage)
    try:
        await store.insert_jobs([_job()])
        assert store.schema == schema
        assert len(await store.list_jobs(JobQuery())) == 1
    finally:
        await store.close()


async def test_a_pool_passed_in_is_used_and_left_open(pg_url: str, schema: str) -> None:
    pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]] = AsyncConnectionPool(
        pg_url, min_size=1, max_size=2, open=False
    )
    try:
        store = PostgresJobStorage(pool, schema=schema)
        await store.insert_jobs([_job()])  # opens the pool it was given if needed
        await store.close()

        assert not pool.closed
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
    finally:
        await pool.close()


async def test_a_pool_without_autocommit_works_too(pg_url: str, schema: str) -> None:
    async with AsyncConnectionPool(pg_url, min_size=1, max_size=2, open=False) as pool:
        store = PostgresJobStorage(pool, schema=schema)
        [result] = await store.insert_jobs([_job()])
        assert await store.retry_job(result.id) is False
        assert (await store.get_metrics()).pending == 1
        large = [_job() for _ in range(300)]  # COPY, in a transaction of its own
        assert len(await store.insert_jobs(large)) == 300
        assert len(await store.insert_job_stream(300, iter([_job() for _ in range(300)]))) == 300
        assert (await store.get_metrics()).pending == 601
        await store.close()


async def test_a_closed_store_refuses_work(make_store: StoreFactory) -> None:
    store = make_store()
    await store.insert_jobs([_job()])
    await store.close()
    await store.close()  # idempotent

    with pytest.raises(StorageError):
        await store.insert_jobs([_job()])


async def test_a_store_that_never_connected_closes_quietly(make_store: StoreFactory) -> None:
    await make_store().close()


def test_the_dsn_or_pool_must_be_one_of_them() -> None:
    with pytest.raises(TypeError):
        PostgresJobStorage(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PostgresJobStorage("  ")


_UNCLOSED = """
import asyncio, sys
from timecrisis.storage.postgres import PostgresJobStorage

async def main() -> None:
    store = PostgresJobStorage(sys.argv[1], schema=sys.argv[2])
    await store.init()
    store.add_wakeup_listener(lambda: None)
    await store.wait_for_listener()
    # no close(): the interpreter must still exit

asyncio.run(main())
"""


async def test_an_unclosed_store_does_not_keep_the_interpreter_alive(
    pg_url: str, schema: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _UNCLOSED,
        pg_url,
        schema,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)  # a hang guard
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
