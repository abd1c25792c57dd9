"""The SQLite store's connection thread: settings, busy handling, error mapping, and thread
lifetimes (close, garbage collection, interpreter exit)."""

from __future__ import annotations

import asyncio
import gc
import os
import pathlib
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.sqlite.conftest import StoreFactory
from tests.storage.factories import insert_one
from timecrisis.clock import ManualClock
from timecrisis.errors import StorageError
from timecrisis.storage.base import JobQuery
from timecrisis.storage.sqlite import SQLiteJobStorage
from timecrisis.storage.sqlite._connection import ConnectionThread, is_busy
from timecrisis.storage.sqlite._migrate import migrate

ROOT = pathlib.Path(__file__).resolve().parents[2]
GUARD_SECONDS = 60


def _threads_of(path: pathlib.Path) -> list[threading.Thread]:
    """The store's threads on `path`: they carry the file name (unique per test here)."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith("timecrisis-sqlite") and thread.name.endswith(f":{path.name}")
    ]


@pytest.fixture
def unique_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / f"{uuid.uuid4().hex}.db"


@pytest.fixture
def write_lock(db_path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    """A second connection to the file, ready to take the write lock (released at teardown)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


# ---- settings --------------------------------------------------------------------------------


async def test_the_file_is_in_wal_mode(store: SQLiteJobStorage, db_path: pathlib.Path) -> None:
    await store.init()

    conn = sqlite3.connect(db_path)
    try:
        [(mode,)] = conn.execute("PRAGMA journal_mode").fetchall()
    finally:
        conn.close()
    assert mode == "wal"


async def test_the_connection_uses_normal_sync_and_foreign_keys(
    db_path: pathlib.Path, clock: ManualClock
) -> None:
    thread = ConnectionThread(db_path, clock=clock, busy_timeout=1, setup=migrate)
    try:
        settings = await thread.read(
            lambda conn, now: (
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA foreign_keys").fetchone()[0],
                conn.execute("PRAGMA busy_timeout").fetchone()[0],
            )
        )
    finally:
        await thread.close()
    assert settings == (1, 1, 1000)  # synchronous=NORMAL is 1; busy_timeout is in ms


async def test_a_transaction_sees_the_store_clock(
    db_path: pathlib.Path, clock: ManualClock
) -> None:
    thread = ConnectionThread(db_path, clock=clock, busy_timeout=1, setup=migrate)
    try:
        seen: datetime = await thread.write(lambda conn, now: now)
    finally:
        await thread.close()
    assert seen == clock.now()


# ---- busy handling ---------------------------------------------------------------------------


async def test_a_write_waits_for_another_connections_lock_and_then_succeeds(
    store: SQLiteJobStorage, write_lock: sqlite3.Connection
) -> None:
    await store.init()
    write_lock.execute("BEGIN IMMEDIATE")
    inserting = asyncio.create_task(insert_one(store))
    await asyncio.sleep(0.2)
    assert not inserting.done()  # it cannot commit while the lock is held: it must be waiting

    write_lock.execute("COMMIT")
    job_id = await inserting

    assert await store.get_job(job_id) is not None


async def test_a_lock_held_past_busy_timeout_raises_storage_error_and_changes_nothing(
    make_store: StoreFactory, write_lock: sqlite3.Connection
) -> None:
    store = make_store(busy_timeout=0.2)
    await store.init()
    write_lock.execute("BEGIN IMMEDIATE")

    with pytest.raises(StorageError, match="busy_timeout") as raised:
        await insert_one(store)

    write_lock.execute("COMMIT")
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert await store.list_jobs(JobQuery()) == []
    await insert_one(store)  # the store works again once the lock is free


async def test_reads_never_wait_for_a_write_lock(
    make_store: StoreFactory, write_lock: sqlite3.Connection
) -> None:
    store = make_store(busy_timeout=0.2)
    job_id = await insert_one(store)
    write_lock.execute("BEGIN IMMEDIATE")
    write_lock.execute("DELETE FROM jobs")  # uncommitted: readers still see the job

    job = await store.get_job(job_id)

    assert job is not None


async def test_a_busy_error_that_escapes_sqlite_reruns_the_whole_transaction(
    db_path: pathlib.Path, clock: ManualClock
) -> None:
    thread = ConnectionThread(db_path, clock=clock, busy_timeout=5, setup=migrate)
    runs: list[int] = []

    def flaky(conn: sqlite3.Connection, now: datetime) -> int:
        conn.execute(
            "INSERT INTO workers (name, first_seen, last_heartbeat, is_leader, running)"
            " VALUES ('w', 0, 0, 0, ?)",
            (len(runs),),
        )
        runs.append(len(runs))
        if len(runs) < 3:
            raise sqlite3.OperationalError("database is locked")
        return conn.execute("SELECT count(*) FROM workers").fetchone()[0]  # type: ignore[no-any-return]

    try:
        rows = await thread.write(flaky)
    finally:
        await thread.close()
    assert runs == [0, 1, 2]
    assert rows == 1  # the two failed attempts were rolled back


async def test_a_busy_error_that_never_clears_gives_up_after_busy_timeout(
    db_path: pathlib.Path, clock: ManualClock
) -> None:
    thread = ConnectionThread(db_path, clock=clock, busy_timeout=0.1, setup=migrate)

    def always_busy(conn: sqlite3.Connection, now: datetime) -> None:
        raise sqlite3.OperationalError("database is locked")

    try:
        with pytest.raises(StorageError) as raised:
            await thread.write(always_busy)
    finally:
        await thread.close()
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)


async def test_other_sqlite_errors_are_storage_errors_at_once(
    db_path: pathlib.Path, clock: ManualClock
) -> None:
    thread = ConnectionThread(db_path, clock=clock, busy_timeout=30, setup=migrate)
    calls: list[None] = []

    def broken(conn: sqlite3.Connection, now: datetime) -> None:
        calls.append(None)
        conn.execute("SELECT * FROM no_such_table")

    try:
        with pytest.raises(StorageError, match="no_such_table") as raised:
            await thread.read(broken)
    finally:
        await thread.close()
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert len(calls) == 1


async def test_an_error_in_python_rolls_back_and_propagates_as_is(
    db_path: pathlib.Path, clock: ManualClock
) -> None:
    thread = ConnectionThread(db_path, clock=clock, busy_timeout=1, setup=migrate)

    def half_done(conn: sqlite3.Connection, now: datetime) -> None:
        conn.execute(
            "INSERT INTO workers (name, first_seen, last_heartbeat, is_leader, running)"
            " VALUES ('w', 0, 0, 0, 0)"
        )
        raise ValueError("changed my mind")

    try:
        with pytest.raises(ValueError, match="changed my mind"):
            await thread.write(half_done)
        count = await thread.read(
            lambda conn, now: conn.execute("SELECT count(*) FROM workers").fetchone()[0]
        )
    finally:
        await thread.close()
    assert count == 0


@pytest.mark.parametrize(
    ("error", "busy"),
    [
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("database table is locked"), True),
        (sqlite3.OperationalError("no such table: jobs"), False),
        (sqlite3.IntegrityError("UNIQUE constraint failed: jobs.id"), False),
    ],
)
def test_busy_errors_are_told_apart_from_the_others(error: sqlite3.Error, busy: bool) -> None:
    assert is_busy(error) is busy


async def test_a_file_that_cannot_be_opened_is_a_storage_error(tmp_path: pathlib.Path) -> None:
    store = SQLiteJobStorage(tmp_path / "missing-dir" / "jobs.db")
    try:
        with pytest.raises(StorageError) as raised:
            await store.init()
    finally:
        await store.close()
    assert isinstance(raised.value.__cause__, sqlite3.Error)


# ---- thread lifetimes ------------------------------------------------------------------------


async def test_close_joins_the_connection_and_watcher_threads(unique_path: pathlib.Path) -> None:
    store = SQLiteJobStorage(unique_path)
    await store.init()
    unsubscribe = store.add_wakeup_listener(lambda: None)
    threads = _threads_of(unique_path)
    assert len(threads) == 2

    await store.close()

    assert [thread for thread in threads if thread.is_alive()] == []
    unsubscribe()  # harmless after close


async def test_close_is_idempotent_and_a_closed_store_refuses_calls(
    store: SQLiteJobStorage,
) -> None:
    await insert_one(store)
    await store.close()
    await store.close()

    with pytest.raises(StorageError, match="closed"):
        await store.get_job("any")
    with pytest.raises(StorageError, match="closed"):
        store.add_wakeup_listener(lambda: None)


async def test_a_store_that_was_never_used_starts_no_thread(unique_path: pathlib.Path) -> None:
    store = SQLiteJobStorage(unique_path)
    await store.close()

    assert _threads_of(unique_path) == []
    assert unique_path.name not in os.listdir(unique_path.parent)  # not even created


async def test_the_watcher_runs_only_while_someone_listens(unique_path: pathlib.Path) -> None:
    store = SQLiteJobStorage(unique_path)
    try:
        await store.init()
        unsubscribe = store.add_wakeup_listener(lambda: None)
        [watcher] = [t for t in _threads_of(unique_path) if "watch" in t.name]

        unsubscribe()

        await asyncio.to_thread(watcher.join, GUARD_SECONDS)
        assert not watcher.is_alive()
    finally:
        await store.close()


async def test_a_store_dropped_without_close_stops_its_thread(unique_path: pathlib.Path) -> None:
    store = SQLiteJobStorage(unique_path)
    await store.init()
    [thread] = _threads_of(unique_path)

    del store
    gc.collect()

    await asyncio.to_thread(thread.join, GUARD_SECONDS)
    assert not thread.is_alive()


_EXIT_WITHOUT_CLOSE = """
import asyncio, sys
from timecrisis.storage.sqlite import SQLiteJobStorage

async def main() -> None:
    store = SQLiteJobStorage(sys.argv[1], busy_timeout=600)
    await store.get_job("warm-up")
    store.add_wakeup_listener(lambda: None)
    # The parent holds the write lock: this call's thread is stuck in SQLite's busy wait
    # (for up to 600 s) when the interpreter exits.
    asyncio.ensure_future(store.heartbeat_worker("w", running=0, is_leader=False))
    await asyncio.sleep(0.3)
    print("leaving without close()", flush=True)

asyncio.run(main())
"""


def test_an_unclosed_store_with_a_call_in_flight_does_not_keep_the_process_alive(
    db_path: pathlib.Path, write_lock: sqlite3.Connection
) -> None:
    asyncio.run(_init(db_path))  # the schema exists: the child's first read needs no lock
    write_lock.execute("BEGIN IMMEDIATE")

    child = subprocess.run(
        [sys.executable, "-c", _EXIT_WITHOUT_CLOSE, str(db_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=GUARD_SECONDS,  # a non-daemon thread would hold the exit for 600 s
        check=False,
    )

    assert child.returncode == 0, child.stderr.decode()
    assert child.stdout.decode().strip() == "leaving without close()"


async def _init(path: pathlib.Path) -> None:
    store = SQLiteJobStorage(path)
    try:
        await store.init()
    finally:
        await store.close()
