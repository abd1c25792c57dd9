"""Stopping a worker at the library's defaults (DESIGN §1 `stop(force=False)`, `run()`; §2
"Graceful stop"; §4 logs): a stop says what it waits for, ends within about `shutdown_timeout`
even when the store cannot be reached (at once when forced), says what it could not record,
and a worker process stops on SIGHUP as on SIGTERM.

The unreachable stores are real failures: PostgreSQL behind a TCP proxy that the test cuts (as
a server restart or a dropped link would), and an SQLite file whose write lock another
connection holds (as another process in a long transaction would; a full disk fails the same
calls). The bounds asserted are `shutdown_timeout + 2 s` and `2 s` forced; the measured times
are printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from tests.pg_support import adrop_schema, fresh_schema, require_postgres
from tests.tcp_proxy import TcpProxy
from tests.waiting import eventually
from timecrisis import (
    JobContext,
    JobScheduler,
    JobStatus,
    JobStorage,
    PostgresJobStorage,
    SQLiteJobStorage,
)

SHUTDOWN_TIMEOUT = 15.0  # the default, which these tests must not change
REPO = Path(__file__).resolve().parents[2]


class Empty(BaseModel):
    pass


def _register_polite(scheduler: JobScheduler, started: asyncio.Event) -> None:
    """A handler that runs until the worker stops, then returns (as DESIGN §1 asks of one)."""

    @scheduler.job("polite", concurrency=None)
    async def polite(data: Empty, ctx: JobContext) -> str:
        started.set()
        while not ctx.is_shutting_down:
            await asyncio.sleep(0.02)
        return "stopped politely"


async def _timed_stop(scheduler: JobScheduler, *, force: bool = False) -> float:
    began = time.monotonic()
    # A hang guard far above the bounds asserted: a failure reports a time, not a hang.
    async with asyncio.timeout(SHUTDOWN_TIMEOUT * 4):
        await scheduler.stop(force=force)
    return time.monotonic() - began


def _messages(
    caplog: pytest.LogCaptureFixture, level: int, logger: str = "timecrisis"
) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and (r.name == logger or r.name.startswith(f"{logger}."))
    ]


# ---- the INFO line -------------------------------------------------------------------------


async def test_a_stop_says_what_it_waits_for(
    store: JobStorage, default_scheduler: DefaultSchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="timecrisis")
    scheduler = default_scheduler()
    started = asyncio.Event()
    _register_polite(scheduler, started)
    await scheduler.start()
    job_id = await scheduler.enqueue("polite", {})
    await asyncio.wait_for(started.wait(), 10)
    await scheduler.stop()

    assert "stopping: waiting up to 15s for 1 job(s)" in _messages(caplog, logging.INFO)
    job = await scheduler.get_job(job_id)
    assert job is not None and job.status == JobStatus.COMPLETED
    debug = _messages(caplog, logging.DEBUG)
    assert f"job {job_id} (polite) started" in debug
    assert any(m.startswith(f"job {job_id} (polite) finished in ") for m in debug), debug


# ---- the store unreachable -----------------------------------------------------------------


@pytest.fixture
async def proxied_postgres() -> AsyncIterator[tuple[TcpProxy, PostgresJobStorage]]:
    url, schema = require_postgres(), fresh_schema()
    params = conninfo_to_dict(url)
    async with TcpProxy(
        str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)
    ) as proxy:
        storage = PostgresJobStorage(
            make_conninfo(url, host="127.0.0.1", port=str(proxy.port)), schema=schema
        )
        try:
            yield proxy, storage
        finally:
            await proxy.start()  # back up, so close() and the teardown reach the database
            await storage.close()
            await adrop_schema(url, schema)


@pytest.mark.postgres
@pytest.mark.parametrize("force", [False, True], ids=["graceful", "forced"])
async def test_a_stop_ends_with_postgresql_unreachable(
    proxied_postgres: tuple[TcpProxy, PostgresJobStorage],
    caplog: pytest.LogCaptureFixture,
    force: bool,
) -> None:
    proxy, storage = proxied_postgres
    scheduler = JobScheduler(storage, worker="cut-off")
    started = asyncio.Event()
    _register_polite(scheduler, started)
    await scheduler.start()
    try:
        await scheduler.enqueue("polite", {})
        await asyncio.wait_for(started.wait(), 10)
        await proxy.go_down()  # every connection cut, new ones refused

        took = await _timed_stop(scheduler, force=force)
        print(f"\nPostgreSQL down, stop(force={force}) took {took:.2f}s")
        assert took < (2.0 if force else SHUTDOWN_TIMEOUT + 2.0)
        errors = _messages(caplog, logging.ERROR, "timecrisis.worker")
        assert any(
            "could not record 1 completion(s)" in m or "could not release 1 job(s)" in m
            for m in errors
        ), errors
        assert all("leases expire and the leader recovers them" in m for m in errors), errors

        started_close = time.monotonic()
        async with asyncio.timeout(10):
            await storage.close()
        print(f"PostgreSQL down, close() took {time.monotonic() - started_close:.2f}s")
    finally:
        await scheduler.stop(force=True)


@pytest.mark.parametrize("force", [False, True], ids=["graceful", "forced"])
async def test_a_stop_ends_with_the_sqlite_file_locked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, force: bool
) -> None:
    path = tmp_path / "jobs.db"
    storage = SQLiteJobStorage(path)  # the default busy_timeout: 30 s per write
    scheduler = JobScheduler(storage, worker="locked-out")
    started = asyncio.Event()
    _register_polite(scheduler, started)
    await scheduler.start()
    # Another connection takes the write lock and keeps it: every write of the worker now
    # waits for it (up to busy_timeout), as behind another process's long transaction.
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await scheduler.enqueue("polite", {})
        await asyncio.wait_for(started.wait(), 10)
        locker.execute("BEGIN EXCLUSIVE")

        took = await _timed_stop(scheduler, force=force)
        print(f"\nSQLite locked, stop(force={force}) took {took:.2f}s")
        assert took < (2.0 if force else SHUTDOWN_TIMEOUT + 2.0)
        errors = _messages(caplog, logging.ERROR, "timecrisis.worker")
        assert any("could not" in m and "leader recovers them" in m for m in errors), errors

        began = time.monotonic()
        async with asyncio.timeout(10):
            await storage.close()
        print(f"SQLite locked, close() took {time.monotonic() - began:.2f}s")
    finally:
        locker.close()
        await scheduler.stop(force=True)
        await storage.close()


@pytest.mark.postgres
async def test_a_forced_stop_cuts_a_graceful_one_short_with_the_store_down(
    proxied_postgres: tuple[TcpProxy, PostgresJobStorage],
) -> None:
    """`stop(force=True)` while a graceful stop waits (what a second signal does)."""
    proxy, storage = proxied_postgres
    scheduler = JobScheduler(storage, worker="impatient")

    @scheduler.job("stubborn", concurrency=None)
    async def stubborn(data: Empty, ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(3600)  # ignores the graceful stop

    started = asyncio.Event()
    await scheduler.start()
    await scheduler.enqueue("stubborn", {})
    await asyncio.wait_for(started.wait(), 10)
    await proxy.go_down()
    graceful = asyncio.create_task(scheduler.stop())
    await asyncio.sleep(0.5)  # the graceful stop is waiting for the handler
    assert not graceful.done()
    took = await _timed_stop(scheduler, force=True)
    print(f"\nPostgreSQL down, force during a graceful stop took {took:.2f}s")
    assert took < 2.0
    async with asyncio.timeout(1):
        await graceful


# ---- signals -------------------------------------------------------------------------------

_WORKER_SCRIPT = """
import asyncio, logging, sys
from pydantic import BaseModel
from timecrisis import JobScheduler, SQLiteJobStorage

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
scheduler = JobScheduler(SQLiteJobStorage(sys.argv[1]), worker="hup-worker")

class Empty(BaseModel):
    pass

@scheduler.job("noop", concurrency=None)
async def noop(data: Empty, ctx) -> None:
    pass

@scheduler.job("stubborn", concurrency=None)
async def stubborn(data: Empty, ctx) -> None:
    await asyncio.sleep(3600)  # ignores the graceful stop

scheduler.run()
"""


def _text(log: Path) -> str:
    return log.read_text()


async def _spawn_worker(tmp_path: Path) -> tuple[asyncio.subprocess.Process, Path]:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER_SCRIPT))
    log = tmp_path / "worker.log"
    with log.open("wb") as stderr:  # a file, not a pipe: nothing to drain while we wait
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(tmp_path / "jobs.db"),
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )

    async def started() -> bool:
        return "worker hup-worker started" in _text(log)

    await eventually(started, timeout=30)
    return process, log


async def _exit_code(process: asyncio.subprocess.Process, log: Path, limit: float) -> int:
    try:
        async with asyncio.timeout(limit):
            return await process.wait()
    except TimeoutError:
        raise AssertionError(f"the worker did not exit within {limit}s:\n{_text(log)}") from None


async def test_a_worker_process_stops_on_sighup(tmp_path: Path) -> None:
    process, log = await _spawn_worker(tmp_path)
    try:
        process.send_signal(signal.SIGHUP)
        code = await _exit_code(process, log, 10)
        text = _text(log)
        assert code == 0, text  # not -SIGHUP: the default action would kill it
        assert "stopping: no job running" in text, text
        assert "worker hup-worker stopped" in text, text
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_second_sigterm_ends_a_worker_whose_store_is_locked(tmp_path: Path) -> None:
    """Issue 11 item 7 as reported: store unreachable, SIGTERM, then a second SIGTERM."""
    process, log = await _spawn_worker(tmp_path)
    producer = SQLiteJobStorage(tmp_path / "jobs.db")
    locker = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    try:
        scheduler = JobScheduler(producer, worker="producer")

        @scheduler.job("stubborn", concurrency=None)
        async def stubborn(data: Empty, ctx: JobContext) -> None: ...

        job_id = await scheduler.enqueue("stubborn", {})

        async def running() -> bool:
            job = await scheduler.get_job(job_id)
            return job is not None and job.status == JobStatus.RUNNING

        await eventually(running, timeout=30)
        locker.execute("BEGIN EXCLUSIVE")  # from now on every write of the worker waits
        process.send_signal(signal.SIGTERM)

        async def stopping() -> bool:
            return "signal again to force" in _text(log)

        await eventually(stopping, timeout=10)
        assert "stopping: waiting up to 15s for 1 job(s); signal again to force" in _text(log)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await _exit_code(process, log, 10)
        took = time.monotonic() - began
        print(f"\nSQLite locked, exit after the second SIGTERM took {took:.2f}s")
        text = _text(log)
        assert code == 0, text
        assert took < 3.0, text  # the stop (about 1 s) and closing the store (1 s at most)
        assert "could not release 1 job(s) at stop" in text, text
    finally:
        locker.close()
        await producer.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
